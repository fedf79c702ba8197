//! `replay-tool`: offline audit, verification and deterministic replay of a data directory.

fn main() {
    println!("replay-tool: no subcommands yet");
}
