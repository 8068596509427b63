//! The EventStoreDB / KurrentDB adapter against a real server: the conformance suite.
//!
//! It needs a server, so every test is ignored unless run with `--ignored` and `KURRENTDB_URL`
//! set (`scripts/test` does both when the variable is set), e.g.
//! `KURRENTDB_URL='esdb://localhost:2113?tls=false' cargo test -p kring-store --test esdb -- --ignored`.
//! The server must accept appends of a little over 1 MiB (see `kring_store::esdb`). Every check
//! writes to fresh streams, so a server that other runs used before is fine. The checks of the
//! global log (the head, a live subscriber counting everything it sees) assume that nobody else
//! appends meanwhile, so the checks of this file run one at a time: the guard holds a lock.

use kring_store::esdb::EsdbStore;
use tokio::sync::{Mutex, MutexGuard};

/// Serialises the checks of this test binary (cargo runs tests on parallel threads).
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn make() -> (EsdbStore, MutexGuard<'static, ()>) {
    let guard = ONE_AT_A_TIME.lock().await;
    let url = std::env::var("KURRENTDB_URL").unwrap_or_else(|_| {
        panic!(
            "KURRENTDB_URL is not set: point it at a KurrentDB/EventStoreDB server, e.g. \
             esdb://localhost:2113?tls=false, to run the EventStoreDB conformance suite"
        )
    });
    match EsdbStore::connect(&url).await {
        Ok(store) => (store, guard),
        Err(e) => panic!("cannot connect to the server at KURRENTDB_URL: {e}"),
    }
}

kring_store::conformance_suite!(make, #[ignore = "needs a KurrentDB/EventStoreDB server: set KURRENTDB_URL (e.g. esdb://localhost:2113?tls=false) and run scripts/test"]);
