//! The built-in registry: a content-addressed store loaded from bundles, served over the OCI distribution API.
