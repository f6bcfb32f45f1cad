//! The flags `plan`, `install` and `status` share, declared once and flattened into each command: the site
//! (`--inventory`, `--bundle`, `--state-dir`: all three read the same state dir), the steps (`--pubkey`,
//! `--from`, `--only`: plan and install) and the log (`--log-dir`: install).
//!
//! `--bundle` means something a little different to each command, so each one gives it its own help with
//! `#[command(mut_arg("bundle", ...))]` (plan also words `--only` / `--from` its own way); the rest keep the help
//! written here.

use crate::error::HintExt;
use crate::install::kit::Kit;
use crate::install::Step;
use crate::site::inventory::Inventory;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The site and its bundle: plan, install and status.
#[derive(Debug, Clone, clap::Args)]
pub struct SiteArgs {
    /// The site inventory (YAML; see manifests/site.example.yaml).
    #[arg(long, short = 'i', value_name = "SITE.yaml")]
    pub inventory: PathBuf,
    // help: set by each command (what it wants the bundle for)
    #[arg(long, value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// The deploy machine's state for this cluster: journal, SSH state, the bundle's files for the nodes
    /// (default: /var/lib/airgap/<cluster>).
    #[arg(long, value_name = "DIR", env = "AIRGAP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl SiteArgs {
    /// `--state-dir`, or `/var/lib/airgap/<cluster>`.
    pub fn state_dir(&self, inv: &Inventory) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| default_state_dir(inv))
    }
}

/// `--state-dir` alone, for the commands that read the deploy machine's state without a bundle (`hostkey`).
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The deploy machine's state for this cluster (default: /var/lib/airgap/<cluster>).
    #[arg(long, value_name = "DIR", env = "AIRGAP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateArgs {
    /// `--state-dir`, or `/var/lib/airgap/<cluster>` (as [`SiteArgs::state_dir`]).
    pub fn state_dir(&self, inv: &Inventory) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| default_state_dir(inv))
    }
}

fn default_state_dir(inv: &Inventory) -> PathBuf {
    Path::new("/var/lib/airgap").join(&inv.cluster.name)
}

/// The bundle's signing key and the steps to run: plan and install.
#[derive(Debug, Clone, clap::Args)]
pub struct StepArgs {
    /// The bundle signers' public key (minisign `.pub`): the nodes verify the bundle with it before loading
    /// images or installing packages (runtime, registry, apiserver-lb, nginx).
    #[arg(long, value_name = "KEY.pub", env = "AIRGAP_PUBKEY")]
    pub pubkey: Option<PathBuf>,
    /// Start at this step (the earlier ones are not looked at).
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    /// Only these steps (comma-separated), e.g. `preflight,os-prepare`.
    #[arg(long, value_name = "STEP[,STEP...]")]
    pub only: Option<String>,
}

impl StepArgs {
    /// The steps `--only` / `--from` select, in order.
    pub fn select(&self) -> Result<Vec<Box<dyn Step>>> {
        crate::install::steps::select(self.only.as_deref(), self.from.as_deref())
    }
}

/// With a delta bundle, only the steps that bring the registry up to date run (distribute copies the delta to
/// the registry workers, registry loads it into their store, which must hold its base): the site was
/// installed from the base, and a delta carries only what the base lacks.
pub fn steps_for_bundle(steps: Vec<Box<dyn Step>>, kit: Option<&Kit>) -> Result<Vec<Box<dyn Step>>> {
    let Some(base) = kit.and_then(|k| k.root().base.as_ref()) else { return Ok(steps) };
    let kept: Vec<Box<dyn Step>> = steps.into_iter().filter(|s| DELTA_STEPS.contains(&s.name())).collect();
    if kept.is_empty() {
        return Err(anyhow::anyhow!(
            "the bundle is a delta of {}: it only updates the registry (steps {}), and the steps selected leave both out",
            base.describe(),
            DELTA_STEPS.join(", ")
        ))
        .hint("drop --only/--from, or pass --only distribute,registry; the other steps need the full bundle");
    }
    Ok(kept)
}

/// The steps a delta bundle runs.
pub const DELTA_STEPS: [&str; 2] = ["distribute", "registry"];

/// Where the log goes: install.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Where the full log goes (default: /var/log/airgap).
    #[arg(long, value_name = "DIR", env = "AIRGAP_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
}

impl LogArgs {
    pub fn log_dir(&self) -> PathBuf {
        self.log_dir.clone().unwrap_or_else(|| PathBuf::from("/var/log/airgap"))
    }
}

/// With `--bundle`: its signed head verified with `--pubkey` before anything else is done with it (a file that
/// is not a bundle signed by that key stops the command here, having changed nothing), and its kit located
/// under `state_dir`. Returns the kit and the public key (to verify the whole bundle when extracting it).
pub fn open_kit(site: &SiteArgs, steps: &StepArgs, state_dir: &Path) -> Result<Option<(Kit, minisign::PublicKey)>> {
    let Some(bundle) = &site.bundle else { return Ok(None) };
    let Some(pubkey) = &steps.pubkey else {
        return Err(anyhow::anyhow!("--bundle {} was given without --pubkey", bundle.display()))
            .context("nothing of a bundle is used before its signature verified")
            .hint("pass --pubkey KEY.pub (the bundle signers' public key), or set AIRGAP_PUBKEY");
    };
    let pk = crate::sign::load_public_key(pubkey)?;
    let kit = Kit::open(bundle, &pk, state_dir).with_context(|| format!("cannot use --bundle {}", bundle.display()))?;
    Ok(Some((kit, pk)))
}
