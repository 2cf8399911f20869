//! The `helios-infra` binary: a thin front end over the library's CLI.

fn main() {
    std::process::exit(helios_infra::cli::main());
}
