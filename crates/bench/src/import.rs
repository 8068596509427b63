//! Bulk import: a generated log sealed through the key vault and appended, pipelined.
//!
//! Consecutive events of one stream go in one append. The appends of a chunk are queued in log
//! order and pipelined: the store's queue takes them in that order and commits many per group
//! commit, so the global order is the generated order (the `import_keeps_the_log_order` test
//! pins it).

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use kring_domain::simulation::Recorded;
use kring_domain::StreamName;
use kring_projections::System;
use kring_store::{EventStore, ExpectedVersion, Metadata, NewEvent};
use std::task::Poll;

/// Appends in flight at once.
const PIPELINE: usize = 256;
/// Events being sealed at once.
const SEALING: usize = 64;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Sealing failed.
    #[error("sealing: {0}")]
    Vault(#[from] kring_store::vault::VaultError),
    /// Appending failed.
    #[error("appending: {0}")]
    Store(#[from] kring_store::StoreError),
}

/// Seals and appends `chunk`; returns how many events were written.
///
/// # Errors
/// [`ImportError`].
pub async fn write(system: &System, chunk: Vec<Recorded>) -> Result<u64, ImportError> {
    let vault = &system.vault;
    // Sealing creates a key per new subject (a durable write): many at once, results in order.
    let mut sealed = futures::stream::iter(chunk)
        .map(|r| async move {
            let meta = Metadata::new(r.at, r.actor);
            vault.seal(&r.event, meta).await.map(|e| (r.stream, e))
        })
        .buffered(SEALING);
    let mut appends: Vec<(StreamName, Vec<NewEvent>)> = Vec::new();
    let mut written = 0;
    while let Some(result) = sealed.next().await {
        let (stream, event) = result?;
        written += 1;
        match appends.last_mut() {
            Some((last, events)) if *last == stream => events.push(event),
            _ => appends.push((stream, vec![event])),
        }
    }
    let store = &system.store;
    // Each append is polled once as soon as it is made, so it joins the store's queue before
    // the next one is made; outside the runtime's cooperative budget, which could otherwise
    // leave that first poll pending and let a later append overtake it.
    tokio::task::unconstrained(async {
        let mut inflight = FuturesOrdered::new();
        for (stream, events) in appends {
            let mut append =
                Box::pin(async move { store.append(&stream, ExpectedVersion::Any, events).await });
            match futures::poll!(append.as_mut()) {
                Poll::Ready(result) => {
                    result?;
                }
                Poll::Pending => inflight.push_back(append),
            }
            while inflight.len() >= PIPELINE {
                if let Some(result) = inflight.next().await {
                    result?;
                }
            }
        }
        while let Some(result) = inflight.next().await {
            result?;
        }
        Ok(written)
    })
    .await
}
