//! What the person and the log see while the engine works: one progress line per node on a terminal (plain
//! lines otherwise), warnings once per run, and a full log file in which [`Logged`] records every command
//! run on a node with its outcome.

use super::ssh::{shell_join, CmdOutput, Stdin, Transport};
use crate::output::Output;
use crate::site::inventory::Node;
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Progress on stderr (one indicatif line per node on a terminal, plain lines otherwise) and a full log file.
pub struct Progress {
    out: Output,
    multi: Option<indicatif::MultiProgress>,
    bars: BTreeMap<String, indicatif::ProgressBar>,
    log: Option<Mutex<fs_err::File>>,
    warned: Mutex<std::collections::BTreeSet<String>>,
}

impl Progress {
    pub fn new(out: &Output, nodes: &[&Node], log_file: Option<&Path>) -> Result<Progress> {
        let log = match log_file {
            Some(p) => {
                if let Some(d) = p.parent() {
                    fs_err::create_dir_all(d)?;
                }
                Some(Mutex::new(
                    fs_err::OpenOptions::new().create(true).append(true).open(p)?,
                ))
            }
            None => None,
        };
        let (multi, mut bars) = (out.progress.then(indicatif::MultiProgress::new), BTreeMap::new());
        if let Some(m) = &multi {
            let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(8);
            let style =
                indicatif::ProgressStyle::with_template(&format!("{{spinner}} {{prefix:{width}}}  {{wide_msg}}"))
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            for n in nodes {
                let b = m.add(
                    indicatif::ProgressBar::new_spinner()
                        .with_style(style.clone())
                        .with_prefix(n.name.clone()),
                );
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b.set_message("waiting");
                bars.insert(n.name.clone(), b);
            }
        }
        Ok(Progress {
            out: *out,
            multi,
            bars,
            log,
            warned: Mutex::default(),
        })
    }

    /// Write to the log file only.
    pub fn log(&self, line: &str) {
        if let Some(l) = &self.log {
            let mut f = l.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{} {line}", super::journal::now_rfc3339());
        }
    }

    /// What a node is doing now (its line on a terminal; the log).
    pub fn set(&self, node: &str, msg: &str) {
        self.log(&format!("[{node}] {msg}"));
        if let Some(b) = self.bars.get(node) {
            b.set_message(msg.to_string());
        }
    }

    /// A finished step on a node: the node's line on a terminal, a plain line otherwise.
    pub fn outcome(&self, node: &str, msg: &str) {
        self.log(&format!("[{node}] {msg}"));
        match self.bars.get(node) {
            Some(b) => b.set_message(msg.to_string()),
            None => self.out.info(format!("{node}: {msg}")),
        }
    }

    /// A line for the person (above the bars on a terminal).
    pub fn println(&self, msg: &str) {
        self.log(msg);
        if self.out.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    /// A warning, once per run (steps plan several times per node).
    pub fn warn(&self, msg: &str) {
        if !self.warned.lock().unwrap_or_else(|e| e.into_inner()).insert(msg.to_string()) {
            return;
        }
        self.log(&format!("warning: {msg}"));
        match &self.multi {
            Some(m) => {
                m.suspend(|| self.out.warn(msg));
            }
            None => self.out.warn(msg),
        }
    }

    pub fn finish(&self) {
        for b in self.bars.values() {
            b.finish();
        }
    }
}

/// Wraps a transport: every command and its outcome go to the log.
pub struct Logged<'a> {
    pub inner: &'a dyn Transport,
    pub progress: &'a Progress,
}

impl Transport for Logged<'_> {
    fn node(&self) -> &str {
        self.inner.node()
    }
    fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CmdOutput> {
        let node = self.inner.node();
        self.progress.log(&format!("[{node}] $ {}", shell_join(argv)));
        let r = self.inner.run(argv, stdin);
        match &r {
            Ok(o) => {
                self.progress.log(&format!("[{node}]   exit {}", o.code));
                if !o.stderr.trim().is_empty() {
                    self.progress.log(&format!("[{node}]   stderr: {}", o.stderr.trim()));
                }
            }
            Err(e) => self.progress.log(&format!("[{node}]   error: {e:#}")),
        }
        r
    }
}
