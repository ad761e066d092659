//! The `hv` binary: everything lives in the library; see `cli/`.

fn main() -> std::process::ExitCode {
    hv::cli::main()
}
