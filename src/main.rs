fn main() -> std::process::ExitCode {
    airgap::cli::main()
}
