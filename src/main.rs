//! The `switchyard` binary: everything lives in the library; see `switchyard::cli`.

// Executions allocate many small JSON values; mimalloc is markedly faster than glibc's
// allocator for that pattern (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
