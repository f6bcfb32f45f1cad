//! The command line: one file per subcommand, each a thin layer over the domain modules.

use crate::error::{self, EXIT_BUG, EXIT_FAILURE, EXIT_USAGE};
use crate::output::{ColorChoice, Output};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod build;
pub mod certs;
pub mod gc;
pub mod hostkey;
pub mod images;
pub mod inspect;
pub mod install;
pub mod keygen;
pub mod load;
pub mod node;
pub mod plan;
pub mod push;
pub mod serve;
pub mod site_args;
pub mod status;
pub mod unpack;
pub mod verify;

#[derive(Debug, Parser)]
#[command(name = "airgap", version, about = "Package, verify and install a highly available Kubernetes cluster at sites with no internet")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Print only errors and the command's data (no progress, no informational lines).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log output on stderr (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to color stderr. `NO_COLOR` in the environment turns color off for `auto`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a minisign key pair for signing bundles.
    Keygen(keygen::Args),
    /// Fetch every image and file of a bundle manifest and write one signed bundle.
    Build(build::Args),
    /// Check a bundle's signature and every checksum, touching nothing.
    Verify(verify::Args),
    /// Show what a bundle holds (name, version, images, files, sizes, signing key).
    Inspect(inspect::Args),
    /// Verify a bundle while extracting it into a directory (atomically).
    Unpack(unpack::Args),
    /// Verify a bundle and add its images to a registry store.
    Load(load::Args),
    /// Push a bundle's (or a loaded store's) images, digests unchanged, into another registry (Harbor...).
    Push(push::Args),
    /// Serve a registry store over the OCI distribution API (pull only).
    Serve(serve::Args),
    /// List what a registry store holds.
    Images(images::Args),
    /// Free the blobs of a registry store that no image reaches any more (dry run unless --apply).
    Gc(gc::Args),
    /// Show every step of the installation, on every node, with files and commands.
    Plan(plan::Args),
    /// Install the cluster described by an inventory, step by step, resumably.
    Install(install::Args),
    /// Show each node's progress through the installation steps.
    Status(status::Args),
    /// The Kubernetes certificates on the masters: `certs check` shows when each expires.
    Certs(certs::Args),
    /// The nodes' SSH host keys: list them, forget a re-installed node's.
    Hostkey(hostkey::Args),
    /// Node-local work, run by `install` on each node over SSH.
    #[command(hide = true)]
    Node(node::Args),
}

/// Entry point: parse, set up logging, run, report errors in the uv style, map to an exit code.
pub fn main() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let out = Output::new(cli.global.quiet, cli.global.color);
    init_logging(&cli, &out);
    match run(cli.command, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", error::render(&err, out.color));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(command: Command, out: &Output) -> anyhow::Result<()> {
    match command {
        Command::Keygen(a) => keygen::run(a, out),
        Command::Build(a) => build::run(a, out),
        Command::Verify(a) => verify::run(a, out),
        Command::Inspect(a) => inspect::run(a, out),
        Command::Unpack(a) => unpack::run(a, out),
        Command::Load(a) => load::run(a, out),
        Command::Serve(a) => serve::run(a, out),
        Command::Images(a) => images::run(a, out),
        Command::Gc(a) => gc::run(a, out),
        Command::Plan(a) => plan::run(a, out),
        Command::Push(a) => push::run(a, out),
        Command::Install(a) => install::run(a, out),
        Command::Status(a) => status::run(a, out),
        Command::Hostkey(a) => hostkey::run(a, out),
        Command::Certs(a) => certs::run(a, out),
        Command::Node(a) => node::run(a, out),
    }
}

fn init_logging(cli: &Cli, out: &Output) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "airgap=debug,info",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = matches!(&cli.command, Command::Serve(a) if a.json_logs);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        let _ = builder.json().with_current_span(false).try_init();
    } else {
        let _ = builder.with_ansi(out.color).with_target(false).try_init();
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: airgap hit a bug and stopped: {info}");
        eprintln!("hint: this is not your fault; please report it with the command you ran (exit code {EXIT_BUG})");
        std::process::exit(EXIT_BUG as i32);
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
