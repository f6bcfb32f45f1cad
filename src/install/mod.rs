//! The DEPLOY SIDE: what `airgap plan` / `install` / `status` do on the deploy machine. The installation
//! [`steps`] and the [`engine`] that runs them over SSH (check / apply / verify, journaled, resumable).
//!
//! A step only DESCRIBES what a node should look like: [`Step::plan`] returns [`Action`]s (files with their
//! content and mode, commands with an optional check command, copies of local files). The engine turns that
//! description into the inputs hash recorded in the [`journal`], into `check` (is the node already there?),
//! `apply` and `verify` ([`actions`]), run over a [`Transport`] ([`ssh`]) with node-local work done by hidden
//! `airgap node ...` subcommands (the `node` module: typed Rust on the node, not shell strings);
//! [`plan_text`] turns it into `plan` / `--dry-run` output.
//!
//! What lives here:
//! - this file: the [`Step`] trait, [`Action`], [`Ctx`], [`LocalFile`], [`node_cmd`];
//! - the machinery: [`engine`] (decide, apply, verify per node, in parallel), [`progress`] (progress lines
//!   and the log), [`journal`], [`actions`] (check / apply of actions over a transport), [`plan_text`]
//!   (`plan` and `--dry-run` output), [`secret`] (files holding an inventory secret: content on stdin only),
//!   [`secrets`] (the cluster's secrets in the state dir), [`ssh`] (the transport), [`facts`] (the nodes' facts fetched over it),
//!   [`kit`] (the bundle's files for the nodes, extracted here from the verified bundle), [`kubectl`] (applying
//!   the bundle's Kubernetes manifests from the first master and waiting for what they bring up);
//! - the action builders the steps share: [`copies`] (bundle + public key), [`software`] (OS packages,
//!   components), [`services`] (config files + systemd services);
//! - [`steps`] (one file per step) and [`config`] (the site model and the config files rendered from it).
//!
//! Imports go one way: `install` uses `site` (the inventory), `node` (paths, facts, component names on the
//! nodes), `bundle` and `sign` (the kit), `oci` (image references), `kube` (the Kubernetes domain) and the
//! base modules; nothing but `cli` uses `install`.
//!
//! Adding a step (kubeadm, flannel...): a file in [`steps`] implementing [`Step`] with `name`, `summary`,
//! `runs_on` and `plan`; override `check`/`apply`/`verify` or `before` only for what files + commands +
//! checks cannot express. Add it to [`steps::all`] in order.

pub mod actions;
pub mod config;
pub mod copies;
pub mod engine;
pub mod facts;
pub mod journal;
pub mod kit;
pub mod kubeadm;
pub mod kubectl;
pub mod plan_text;
pub mod progress;
pub mod secret;
pub mod registry_credentials;
pub mod secrets;
pub mod services;
pub mod software;
pub mod ssh;
pub mod steps;

use crate::digest::Digest;
use crate::site::inventory::{Inventory, Node};
use ssh::Transport;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;


/// One thing a step does on a node.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A text file with exact content, written atomically and only when different
    /// (`airgap node write-file`). With `block`, only the lines between `# BEGIN <block>` and `# END <block>`
    /// markers are managed; the rest of the file is kept.
    File {
        path: String,
        #[serde(serialize_with = "octal")]
        mode: u32,
        content: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        block: Option<String>,
    },
    /// A command run on the node. When `check` is set, the command runs only if `check` exits non-zero, and the
    /// step counts as done only when `check` exits 0. Without `check`, it runs on every apply (idempotent).
    Command {
        argv: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        check: Option<Vec<String>>,
        why: String,
    },
    /// A file holding secrets (bootstrap token, certificate key, CA key, the Redis password, registry
    /// credentials): THE one way a secret reaches a node. Written with `mode` (0600) by
    /// `airgap node secret-file`, the content on its stdin for the write and for the check (nothing of it, not
    /// even a hash, on a command line); `plan`, `--dry-run`, the log and the journal see only `shown` (the
    /// same file with every secret as `<secret>`) and `source`.
    SecretFile {
        path: String,
        #[serde(serialize_with = "octal")]
        mode: u32,
        shown: String,
        /// Where the secrets come from (said in the plan).
        source: String,
        /// The real content; `None` in `plan` and `status` until its source is read (the cluster secrets
        /// before the first install made them; a password read only for check and apply: see [`secret::fill`]).
        #[serde(skip)]
        content: Option<SecretText>,
        /// sha256 of the real content when known at plan time (in the inputs hash: new cluster secrets re-run
        /// the step). Never on a command line, never printed.
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<Digest>,
    },
    /// A local file copied to the node, verified by sha256 on arrival, skipped when already there.
    Copy {
        local: String,
        remote: String,
        #[serde(serialize_with = "octal")]
        mode: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<Digest>,
        size: Option<u64>,
    },
}

/// Text holding secrets: its Debug shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(s: String) -> SecretText {
        SecretText(s)
    }
    /// The text, to send to the node over stdin. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret: {} bytes>", self.0.len())
    }
}

impl Action {
    /// A file holding secrets: `content` for the node, `shown` (secrets as `<secret>`) for people, `source`
    /// saying where the secrets come from.
    pub fn secret_file(path: &str, mode: u32, content: Option<String>, shown: String, source: &str) -> Action {
        let sha256 = content.as_ref().map(|c| Digest::of_bytes(c.as_bytes()));
        Action::SecretFile { path: path.into(), mode, shown, source: source.into(), content: content.map(SecretText), sha256 }
    }
}

/// File modes in JSON as people write them: "0644".
fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{mode:04o}"))
}

/// A local file to distribute, hashed once per run.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: PathBuf,
    pub sha256: Digest,
    pub size: u64,
}

impl LocalFile {
    pub fn hash(path: PathBuf) -> Result<LocalFile> {
        use anyhow::Context;
        let (sha256, size) = Digest::of_file(&path).with_context(|| format!("failed to hash {}", path.display()))?;
        Ok(LocalFile { path, sha256, size })
    }
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// What every step may look at: the inventory and the local files to distribute.
pub struct Ctx<'a> {
    pub inv: &'a Inventory,
    /// The bundle's files (archive or parts + signatures); `None` when no `--bundle` was given.
    pub bundle: Option<&'a [LocalFile]>,
    /// This airgap binary (copied to every node); `None` in `plan` when hashing is not wanted.
    pub binary: Option<&'a LocalFile>,
    /// The public key the bundle must be signed with (`--pubkey`): the nodes verify the bundle with it before
    /// loading its images or installing its packages.
    pub pubkey: Option<&'a LocalFile>,
    /// The bundle's root document and its files extracted here (set when `--bundle` was given).
    pub kit: Option<&'a kit::Kit>,
    /// Each node's OS, platform and VIP interface, from the facts gathered when the install connected (empty
    /// in `plan` and `status`).
    pub targets: &'a std::collections::BTreeMap<String, facts::Target>,
    /// Warnings found by a step (printed on stderr and logged).
    pub warn: &'a (dyn Fn(&str) + Sync),
    /// The cluster's secrets from the state dir (`None` before the first install made them: `plan` then shows
    /// placeholders).
    pub secrets: Option<&'a secrets::ClusterSecrets>,
}

/// How the engine applies a step on its pending nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOrder {
    /// With the other parallel nodes, at the same time (the default).
    Parallel,
    /// One at a time, in inventory order, before the parallel nodes; the first failure stops the step
    /// (kubeadm-join's control-plane members: etcd grows one member at a time).
    OneAtATime,
}

/// One installation step. See the module documentation for how to add one.
pub trait Step: Send + Sync {
    /// Short name used on the command line (`--only`, `--from`) and in the journal.
    fn name(&self) -> &'static str;
    /// One line: what this step achieves.
    fn summary(&self) -> &'static str;
    /// Does the step run on this node?
    fn runs_on(&self, _ctx: &Ctx, _node: &Node) -> bool {
        true
    }
    /// Everything the step will do on `node`, in order.
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>>;

    /// The hash of the step's inputs on this node: a changed input re-runs the step.
    fn inputs_hash(&self, ctx: &Ctx, node: &Node) -> Result<Digest> {
        let plan = self.plan(ctx, node)?;
        let json = serde_json::to_vec(&(self.name(), &node.name, &plan))?;
        Ok(Digest::of_bytes(&json))
    }

    /// Does the plan depend on the bundle's content (its images' hosts, packages, components)? `status`,
    /// which has no bundle, cannot tell whether such a step's inputs changed.
    fn uses_bundle(&self) -> bool {
        false
    }

    /// When the journal has no `done` entry for a node, may a passing `check` mark the step done without
    /// applying it (a node prepared by hand)? Steps whose check cannot see the past (preflight) say no.
    fn check_without_journal(&self) -> bool {
        true
    }

    /// Cluster-wide work before the per-node work (e.g. preflight's central evaluation), given the nodes
    /// that are not done yet. An error stops the step on every node.
    fn before(&self, _ctx: &Ctx, _pending: &[(&Node, &dyn Transport)]) -> Result<()> {
        Ok(())
    }

    /// How `node` is applied among the step's pending nodes.
    fn apply_order(&self, _ctx: &Ctx, _node: &Node) -> ApplyOrder {
        ApplyOrder::Parallel
    }

    /// Work on nodes the step does not run on, done before the per-node work when some node is pending
    /// (kubeadm-join: the bootstrap token and the uploaded certificates on the first master), by node name.
    /// `pending`: the nodes about to be applied; `None` = everything (what `plan` shows).
    fn cluster_actions(&self, _ctx: &Ctx, _pending: Option<&[&Node]>) -> Result<Vec<(String, Vec<Action>)>> {
        Ok(Vec::new())
    }

    /// What differs on the node from the desired state (empty: already there).
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<Vec<String>> {
        actions::check_all(&self.plan(ctx, node)?, t)
    }

    /// Bring the node to the desired state. Returns what was changed, for the log and the journal.
    fn apply(&self, ctx: &Ctx, node: &Node, t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
        actions::apply_all(&self.plan(ctx, node)?, t, progress)
    }

    /// After apply: the node must now be in the desired state.
    fn verify(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<()> {
        let diff = self.check(ctx, node, t)?;
        if diff.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("verification failed after apply: {}", diff.join("; "))
        }
    }
}

/// The remote `airgap node ...` command line.
pub fn node_cmd(args: &[&str]) -> Vec<String> {
    let mut v = vec![crate::node::BIN.to_string(), "node".to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}
