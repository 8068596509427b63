//! `replay-tool`: the developers' and compliance officers' CLI (built out in the replay-tool issue).
#![forbid(unsafe_code)]

fn main() {
    eprintln!("replay-tool: not built yet; see the open replay-tool issue");
    std::process::exit(2);
}
