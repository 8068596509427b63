//! `kring-api`: the HTTP API server (built out in the HTTP API issue).
#![forbid(unsafe_code)]

fn main() {
    eprintln!("kring-api: the HTTP API is not built yet; see the open API issue");
    std::process::exit(2);
}
