//! Split archives: parts `X.000`, `X.001`... whose concatenation is the archive, and the `X.parts` list.
