//! The scripts and the tests themselves: every shell script passes shellcheck, and nothing in tests/ or
//! scripts/ waits a fixed time to synchronise (each sleep is the poll period of a wait on a condition with a
//! timeout, a sampling period or a pacing, and says so).

use crate::support::{repo, require_tool};
use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for e in fs_err::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, exts, out);
        } else if p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)) {
            out.push(p);
        }
    }
}

#[test]
fn shell_scripts_pass_shellcheck() {
    require_tool("shellcheck");
    let mut scripts = Vec::new();
    files(&repo().join("scripts"), &["sh"], &mut scripts);
    scripts.sort();
    assert!(scripts.len() >= 10, "{scripts:?}");
    let out = Command::new("shellcheck").args(&scripts).output().unwrap();
    assert!(
        out.status.success(),
        "shellcheck found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nothing_sleeps_to_synchronise() {
    let mut all = Vec::new();
    files(&repo().join("tests"), &["rs", "sh", "py"], &mut all);
    files(&repo().join("scripts"), &["sh", "py"], &mut all);
    // (split so that this file does not match itself)
    let calls = [concat!("sle", "ep("), concat!("sle", "ep 0"), concat!("sle", "ep 1"), concat!("sle", "ep \"")];
    let mut offenders = Vec::new();
    let mut seen = 0;
    for f in &all {
        let text = fs_err::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !calls.iter().any(|c| line.contains(c)) {
                continue;
            }
            seen += 1;
            let context = format!("{} {line}", if i > 0 { lines[i - 1] } else { "" }).to_lowercase();
            if !["poll", "period", "pacing"].iter().any(|w| context.contains(w)) {
                offenders.push(format!("{}:{}: {}", f.strip_prefix(repo()).unwrap().display(), i + 1, line.trim()));
            }
        }
    }
    assert!(seen > 0, "the search finds nothing at all: broken");
    assert!(
        offenders.is_empty(),
        "a fixed sleep used to synchronise: wait on a condition (support::wait_until, lab.sh's wait_for), or say \
         on the line which poll/sampling period or pacing it is:\n{}",
        offenders.join("\n")
    );
}
