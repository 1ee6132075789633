fn main() -> std::process::ExitCode {
    certhub::agent::run()
}
