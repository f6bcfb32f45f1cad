//! The engine: per step, decide per node (journal + check), run the step's cluster-wide `before`, then apply +
//! verify on the pending nodes in parallel, journaling each outcome. A step that fails on some nodes finishes
//! on the others (their results are kept) and the install stops before the next step.

use super::journal::{Journal, Status};
use super::progress::{Logged, Progress};
use super::ssh::Transport;
use super::{plan_text, Ctx, LocalFile, Step};
use crate::node::BIN;
use crate::site::inventory::Node;
use anyhow::{bail, Result};

/// A node and how to reach it.
pub struct NodeConn<'a> {
    pub node: &'a Node,
    pub t: Box<dyn Transport>,
    /// Why the node could not be reached (set by [`bootstrap`]); its steps fail with this.
    pub unreachable: Option<Failure>,
    /// The node's facts, gathered by [`bootstrap`] once the binary is there.
    pub facts: Option<crate::node::facts::Facts>,
}

/// Put this airgap binary on every node (verified by sha256, skipped when already there), in parallel.
/// Nodes that cannot be reached are marked; the others go on. Nodes already marked (their host key could not
/// be fetched) are not contacted.
pub fn bootstrap(conns: &mut [NodeConn], binary: &LocalFile, progress: &Progress) {
    std::thread::scope(|s| {
        for c in conns.iter_mut().filter(|c| c.unreachable.is_none()) {
            s.spawn(move || {
                let t = Logged {
                    inner: c.t.as_ref(),
                    progress,
                };
                progress.set(&c.node.name, &format!("connecting to {}", c.node.address));
                let ready = ensure_binary(&t, binary, progress).and_then(|()| super::facts::fetch(&t, &[]));
                match ready {
                    Ok((facts, _)) => c.facts = Some(facts),
                    Err(e) => {
                        let failure = Failure::of(&e);
                        progress.outcome(&c.node.name, &format!("unreachable: {}", failure.message()));
                        c.unreachable = Some(failure);
                    }
                }
            });
        }
    });
}

fn ensure_binary(t: &dyn Transport, binary: &LocalFile, progress: &Progress) -> Result<()> {
    let remote_sha = || crate::install::ssh::remote_sha256(t, BIN, &binary.sha256);
    if remote_sha()?.as_deref() == Some(binary.sha256.hex()) {
        return Ok(());
    }
    progress.set(
        t.node(),
        &format!("copying airgap ({})", super::actions::human_size(binary.size)),
    );
    t.copy(&binary.path, BIN, 0o755, &binary.sha256)?;
    match remote_sha()? {
        Some(h) if h == binary.sha256.hex() => Ok(()),
        h => bail!(
            "the airgap binary on {} has sha256 {} after the copy, expected {}",
            t.node(),
            h.unwrap_or_default(),
            binary.sha256.hex()
        ),
    }
}

enum Decision {
    Skip(String),
    /// in the desired state without a journal entry: record it
    AlreadyThere,
    Apply(String),
    Fail(Failure),
}

/// Why a step failed on a node, kept typed from the error to the summary: the error's messages (outermost
/// first) and its hints apart, so that the summary prints each hint once, as a hint. The journal stores
/// [`Failure::text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub messages: Vec<String>,
    pub hints: Vec<String>,
}

impl Failure {
    pub fn of(e: &anyhow::Error) -> Failure {
        Failure { messages: crate::error::messages(e), hints: crate::error::hints(e) }
    }

    /// The message chain on one line: `failed to x: because y`.
    pub fn message(&self) -> String {
        self.messages.join(": ")
    }

    /// The message chain and the hints on one line, as the journal and the progress lines keep it:
    /// `failed to x: because y (hint: do z)`.
    pub fn text(&self) -> String {
        let mut s = self.message();
        for h in &self.hints {
            s.push_str(&format!(" (hint: {h})"));
        }
        s
    }
}

/// A step that failed on a node.
#[derive(Debug, Clone)]
pub struct NodeFailure {
    pub step: String,
    pub node: String,
    pub failure: Failure,
}

/// What happened, for the final summary.
#[derive(Default)]
pub struct Summary {
    pub applied: usize,
    pub skipped: usize,
    pub failed: Vec<NodeFailure>,
}

/// Run the steps over the nodes. `dry_run` prints what would change instead of changing it.
pub fn run(
    ctx: &Ctx,
    steps: &[Box<dyn Step>],
    conns: &[NodeConn],
    journal: &Journal,
    progress: &Progress,
    dry_run: bool,
) -> Result<Summary> {
    let mut summary = Summary::default();
    for step in steps {
        let name = step.name();
        let on: Vec<&NodeConn> = conns.iter().filter(|c| step.runs_on(ctx, c.node)).collect();
        // 1. decide per node, in parallel
        let decisions: Vec<Result<(crate::digest::Digest, Decision)>> = std::thread::scope(|s| {
            let hs: Vec<_> = on
                .iter()
                .map(|c| s.spawn(move || decide(ctx, step.as_ref(), c, journal, progress)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("bug: a worker thread panicked")))
                .collect()
        });
        let mut pending = Vec::new();
        for (c, d) in on.iter().zip(decisions) {
            let n = &c.node.name;
            let (hash, d) = match d {
                Ok(x) => x,
                Err(e) => (crate::digest::Digest::of_bytes(b""), Decision::Fail(Failure::of(&e))),
            };
            match d {
                Decision::Skip(why) => {
                    summary.skipped += 1;
                    progress.outcome(n, &format!("{name}: {why}"));
                }
                Decision::AlreadyThere => {
                    summary.skipped += 1;
                    if !dry_run {
                        journal.record(name, n, Status::Done, &hash, "already in the desired state")?;
                    }
                    progress.outcome(n, &format!("{name}: already in the desired state"));
                }
                Decision::Apply(why) => pending.push((*c, hash, why)),
                Decision::Fail(failure) => {
                    let msg = failure.text();
                    if !dry_run && c.unreachable.is_none() {
                        journal.record(name, n, Status::Failed, &hash, &msg)?;
                    } else if !dry_run {
                        journal.record(
                            name,
                            n,
                            Status::Failed,
                            &journal.get(name, n).map(|e| e.inputs).unwrap_or(hash),
                            &msg,
                        )?;
                    }
                    progress.outcome(n, &format!("{name}: FAILED: {msg}"));
                    summary.failed.push(NodeFailure { step: name.to_string(), node: n.clone(), failure });
                }
            }
        }
        if dry_run {
            for (c, _, why) in &pending {
                let t = Logged {
                    inner: c.t.as_ref(),
                    progress,
                };
                let text = plan_text::dry_run_node(ctx, step.as_ref(), c.node, &t, why)?;
                print!("{text}");
            }
            continue;
        }
        // 2. cluster-wide work on the pending nodes
        if !pending.is_empty() {
            let loggeds: Vec<Logged> = pending
                .iter()
                .map(|(c, _, _)| Logged {
                    inner: c.t.as_ref(),
                    progress,
                })
                .collect();
            let pairs: Vec<(&Node, &dyn Transport)> = pending
                .iter()
                .zip(&loggeds)
                .map(|((c, _, _), l)| (c.node, l as &dyn Transport))
                .collect();
            for (c, _, _) in &pending {
                progress.set(&c.node.name, &format!("{name}: starting"));
            }
            if let Err(e) = step.before(ctx, &pairs) {
                let msg = Failure::of(&e).text();
                for (c, hash, _) in &pending {
                    // the node's own lines of a per-node report ("  master1: ..."), else the whole message
                    let prefix = format!("  {}: ", c.node.name);
                    let own: Vec<&str> = msg.lines().filter_map(|l| l.strip_prefix(&prefix)).collect();
                    let first = msg.lines().next().unwrap_or_default();
                    let msg = if own.is_empty() && msg.lines().count() > 1 {
                        format!("{first} (problems on other nodes)")
                    } else if own.is_empty() {
                        msg.clone()
                    } else {
                        own.join("; ")
                    };
                    journal.record(name, &c.node.name, Status::Failed, hash, &msg)?;
                    progress.outcome(&c.node.name, &format!("{name}: FAILED"));
                }
                progress.finish();
                return Err(e);
            }
        }
        // 2b. work on other nodes for the pending ones (kubeadm-join: token and certificates on master1)
        if !pending.is_empty() {
            let nodes: Vec<&Node> = pending.iter().map(|(c, _, _)| c.node).collect();
            if let Err(e) = cluster_work(ctx, step.as_ref(), &nodes, conns, progress) {
                let msg = Failure::of(&e).text();
                for (c, hash, _) in &pending {
                    journal.record(name, &c.node.name, Status::Failed, hash, &msg)?;
                    progress.outcome(&c.node.name, &format!("{name}: FAILED"));
                }
                progress.finish();
                return Err(e);
            }
        }
        // 3. apply + verify: the one-at-a-time nodes in order (the first failure stops them), then the others
        //    in parallel
        let one = |c: &NodeConn, why: &str| -> Result<Vec<String>> {
            let n = &c.node.name;
            let t = Logged {
                inner: c.t.as_ref(),
                progress,
            };
            progress.log(&format!("[{n}] {name}: applying ({why})"));
            let report = |m: &str| progress.set(n, &format!("{name}: {m}"));
            let changed = step.apply(ctx, c.node, &t, &report)?;
            report("verifying");
            step.verify(ctx, c.node, &t)?;
            Ok(changed)
        };
        let serial = |c: &NodeConn| step.apply_order(ctx, c.node) == super::ApplyOrder::OneAtATime;
        let mut results: Vec<Option<Result<Vec<String>>>> = pending.iter().map(|_| None).collect();
        let mut stopped = false;
        for (i, (c, _, why)) in pending.iter().enumerate().filter(|(_, (c, _, _))| serial(c)) {
            if stopped {
                results[i] = Some(Err(anyhow::anyhow!("not attempted: the node before it failed (one at a time)")));
                continue;
            }
            let r = one(c, why);
            stopped = r.is_err();
            results[i] = Some(r);
        }
        let parallel: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
            let hs: Vec<_> = pending
                .iter()
                .filter(|(c, _, _)| !serial(c))
                .map(|(c, _, why)| {
                    let one = &one;
                    s.spawn(move || {
                        if stopped {
                            return Err(anyhow::anyhow!("not attempted: a node applied one at a time before it failed"));
                        }
                        one(c, why)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("bug: a worker thread panicked")))
                .collect()
        });
        let mut parallel = parallel.into_iter();
        let results: Vec<Result<Vec<String>>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| parallel.next().unwrap_or_else(|| bail!("bug: a result is missing"))))
            .collect();
        for ((c, hash, _), r) in pending.iter().zip(results) {
            let n = &c.node.name;
            match r {
                Ok(changed) => {
                    let msg = if changed.is_empty() {
                        "done (nothing to change)".to_string()
                    } else {
                        format!("done: {}", changed.join(", "))
                    };
                    journal.record(name, n, Status::Done, hash, &msg)?;
                    summary.applied += 1;
                    progress.outcome(n, &format!("{name}: {msg}"));
                }
                Err(e) => {
                    let failure = Failure::of(&e);
                    journal.record(name, n, Status::Failed, hash, &failure.text())?;
                    progress.outcome(n, &format!("{name}: FAILED: {}", failure.message()));
                    summary.failed.push(NodeFailure { step: name.to_string(), node: n.clone(), failure });
                }
            }
        }
        if !summary.failed.is_empty() {
            break;
        }
    }
    progress.finish();
    Ok(summary)
}

/// The step's work on other nodes than the pending ones (see [`super::Step::cluster_actions`]), applied
/// on those nodes before the pending nodes are.
fn cluster_work(ctx: &Ctx, step: &dyn Step, pending: &[&Node], conns: &[NodeConn], progress: &Progress) -> Result<()> {
    for (node, actions) in step.cluster_actions(ctx, Some(pending))? {
        let Some(c) = conns.iter().find(|c| c.node.name == node) else {
            bail!("bug: {} names {node}, which is not in the inventory", step.name())
        };
        if let Some(why) = &c.unreachable {
            bail!("{} needs {node} first, and it was not reached: {}", step.name(), why.message());
        }
        let t = Logged {
            inner: c.t.as_ref(),
            progress,
        };
        let report = |m: &str| progress.set(&node, &format!("{}: {m}", step.name()));
        let changed = super::actions::apply_all(&actions, &t, &report)
            .map_err(|e| e.context(format!("{}: the work on {node} before the other nodes failed", step.name())))?;
        for c in changed {
            progress.log(&format!("[{node}] {}: {c}", step.name()));
        }
    }
    Ok(())
}

fn decide(
    ctx: &Ctx,
    step: &dyn Step,
    c: &NodeConn,
    journal: &Journal,
    progress: &Progress,
) -> Result<(crate::digest::Digest, Decision)> {
    let hash = step.inputs_hash(ctx, c.node)?;
    if let Some(why) = &c.unreachable {
        return Ok((hash, Decision::Fail(why.clone())));
    }
    let t = Logged {
        inner: c.t.as_ref(),
        progress,
    };
    progress.set(&c.node.name, &format!("{}: checking", step.name()));
    let entry = journal.get(step.name(), &c.node.name);
    let done_same = entry
        .as_ref()
        .is_some_and(|e| e.status == Status::Done && e.inputs == hash);
    if done_same {
        let diff = step.check(ctx, c.node, &t)?;
        return Ok((
            hash,
            if diff.is_empty() {
                Decision::Skip("already done".into())
            } else {
                Decision::Apply(format!("done before, but the node differs now: {}", diff.join("; ")))
            },
        ));
    }
    let changed = entry.as_ref().is_some_and(|e| e.status == Status::Done);
    if !step.check_without_journal() {
        return Ok((
            hash,
            Decision::Apply(if changed {
                "its inputs changed".into()
            } else {
                "not done yet".into()
            }),
        ));
    }
    let diff = step.check(ctx, c.node, &t)?;
    if diff.is_empty() {
        Ok((hash, Decision::AlreadyThere))
    } else {
        Ok((hash, Decision::Apply(diff.join("; "))))
    }
}
