//! `replay-tool`: rebuild read models, replay consent history as of any moment, check who could
//! see a photo when, verify the log and the read models, export a subject's data. See
//! `replay-tool --help` and docs/replay-tool.md; the work is done in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc: rebuilds and reads allocate per event, and glibc's malloc spends much of that time
/// in its own bookkeeping; mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    ExitCode::from(kring_replay_tool::main_with(std::env::args_os()).await)
}
