fn main() -> std::process::ExitCode {
    // started by ssh as SSH_ASKPASS (password authentication): print the password and nothing else
    if let Some(var) = std::env::var_os(airgap::install::ssh::ASKPASS_VAR) {
        return airgap::install::ssh::askpass_main(&var);
    }
    airgap::cli::main()
}
