//! Output conventions: data on stdout, logs and progress on stderr; `--quiet`, `--json`, `NO_COLOR`.

use std::io::IsTerminal;

/// Global output settings, shared by every subcommand.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Suppress progress bars and informational messages (errors are still printed).
    pub quiet: bool,
    /// Colors on stderr (off with `NO_COLOR`, `--color never`, or when stderr is not a terminal).
    pub color: bool,
    /// Draw progress bars (stderr is a terminal and not quiet).
    pub progress: bool,
}

impl Output {
    pub fn new(quiet: bool, color_choice: ColorChoice) -> Self {
        let tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match color_choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && !no_color,
        };
        Output { quiet, color, progress: !quiet && tty }
    }

    /// An informational line on stderr (suppressed by `--quiet`).
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// A warning on stderr (never suppressed).
    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.color {
            eprintln!("\x1b[33;1mwarning\x1b[0m\x1b[1m:\x1b[0m {}", msg.as_ref());
        } else {
            eprintln!("warning: {}", msg.as_ref());
        }
    }

    /// A progress bar that draws on stderr only when it is a terminal and not `--quiet`;
    /// otherwise a hidden bar (so callers never branch on it).
    pub fn bar(&self, len: u64, template: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::stderr_with_hz(10),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Print a value as pretty JSON on stdout (the `--json` form of a command's data).
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(value)?;
    println!("{s}");
    Ok(())
}

/// `1.5 MiB`, `812 B`: sizes for people (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
