//! The `helios-infra` binary: a thin front end over the library's CLI.

/// mimalloc: the orchestrator allocates many small, short-lived futures and strings per
/// chunk from several threads, which glibc's allocator serves markedly slower (see the
/// orchestrator overhead benchmark in docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    helios_infra::process::disable_transparent_huge_pages();
    std::process::exit(helios_infra::cli::main());
}
