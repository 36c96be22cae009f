//! The `toolstream` binary: parses the command line and hands over to the library.

mod cli;

/// mimalloc rather than the system's allocator: see its line in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
