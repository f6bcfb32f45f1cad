//! Error reporting in the style of uv: `error:` / `Caused by:` / `hint:`, and distinct exit codes.
//!
//! Exit codes: 0 success; 1 the operation failed (bad input, failed verification, unreachable host...);
//! 2 the command line itself is wrong (clap's usage errors); 101 airgap hit a bug (a panic).

use std::fmt;

/// Exit code for a failure caused by input or environment (the user can fix it).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a malformed command line (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a bug in airgap (panic).
pub const EXIT_BUG: u8 = 101;

/// An error with a hint attached: what the user can do about it. Printed as `hint: ...` after the causes.
#[derive(Debug)]
struct Hinted {
    hint: String,
    source: anyhow::Error,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hint is not part of the message chain: print the wrapped error's own message.
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// Attach a hint to an error without changing its message chain.
pub fn with_hint(err: anyhow::Error, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted { hint: hint.into(), source: err })
}

/// `result.hint("run `airgap keygen` first")`
pub trait HintExt<T> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
    fn with_hint<F: FnOnce() -> String>(self, f: F) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> HintExt<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| with_hint(e.into(), hint))
    }
    fn with_hint<F: FnOnce() -> String>(self, f: F) -> anyhow::Result<T> {
        self.map_err(|e| with_hint(e.into(), f()))
    }
}

/// All hints found anywhere in the error chain, outermost first.
pub fn hints(err: &anyhow::Error) -> Vec<String> {
    let mut out = Vec::new();
    for cause in err.chain() {
        if let Some(h) = cause.downcast_ref::<Hinted>() {
            out.push(h.hint.clone());
            out.extend(hints(&h.source));
        }
    }
    out.dedup();
    out
}

/// The messages of the chain, outermost first, hints and wrapper layers removed, duplicates folded.
pub fn messages(err: &anyhow::Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    collect_messages(err, &mut out);
    out.dedup();
    out
}

fn collect_messages(err: &anyhow::Error, out: &mut Vec<String>) {
    for cause in err.chain() {
        if let Some(h) = cause.downcast_ref::<Hinted>() {
            collect_messages(&h.source, out);
            return;
        }
        out.push(cause.to_string());
    }
}

/// Render an error for a terminal: `error: ...`, then `  Caused by: ...` lines, then `hint: ...` lines.
pub fn render(err: &anyhow::Error, color: bool) -> String {
    let (red, yellow, cyan, bold, reset) = if color {
        ("\x1b[31;1m", "\x1b[33;1m", "\x1b[36;1m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "", "", "")
    };
    let msgs = messages(err);
    let mut s = String::new();
    let mut iter = msgs.iter();
    if let Some(first) = iter.next() {
        s.push_str(&format!("{red}error{reset}{bold}:{reset} {first}\n"));
    }
    for m in iter {
        s.push_str(&format!("  {yellow}Caused by:{reset} {m}\n"));
    }
    for h in hints(err) {
        s.push_str(&format!("{cyan}hint{reset}{bold}:{reset} {h}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn renders_chain_and_hint() {
        let e: anyhow::Result<()> = Err(anyhow::anyhow!("permission denied"));
        let e = e.context("failed to read /x").hint("run as root").context("failed to load bundle");
        let text = render(&e.unwrap_err(), false);
        assert_eq!(
            text,
            "error: failed to load bundle\n  Caused by: failed to read /x\n  Caused by: permission denied\nhint: run as root\n"
        );
    }
}
