use std::process::ExitCode;

fn main() -> ExitCode {
    certhub::cli::main()
}
