//! Bulk import: a generated log sealed through the key vault and appended, pipelined.
//!
//! The chunk is sealed in batches ([`KeyVault::seal_all`]: the keys of a batch's new subjects
//! are created in one transaction), while the batches before it are being appended.
//! Consecutive events of one stream go in one append. The appends are queued in log order and
//! pipelined: the store's queue takes them in that order and commits many per group commit, so
//! the global order is the generated order (the `import_keeps_the_log_order` test pins it).
//!
//! [`KeyVault::seal_all`]: kring_store::vault::KeyVault::seal_all

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use kring_domain::simulation::Recorded;
use kring_domain::StreamName;
use kring_projections::System;
use kring_store::{EventStore, ExpectedVersion, Metadata, NewEvent};
use std::task::Poll;

/// Appends in flight at once.
const PIPELINE: usize = 256;
/// Events sealed together: their new subjects' keys are one durable write.
const SEAL_BATCH: usize = 1024;
/// Batches being sealed at once (one waits for its keys while another is encrypted).
const SEALING: usize = 2;
/// Events being sealed at once by [`write_one_by_one`].
const SEALING_ONE_BY_ONE: usize = 64;

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

/// Consecutive events of one stream as one append.
fn runs(streams: &[StreamName], events: Vec<NewEvent>) -> Vec<(StreamName, Vec<NewEvent>)> {
    let mut appends: Vec<(StreamName, Vec<NewEvent>)> = Vec::new();
    for (stream, event) in streams.iter().zip(events) {
        match appends.last_mut() {
            Some((last, events)) if last == stream => events.push(event),
            _ => appends.push((*stream, vec![event])),
        }
    }
    appends
}

/// Seals and appends `chunk`; returns how many events were written.
///
/// # Errors
/// [`ImportError`].
pub async fn write(system: &System, chunk: Vec<Recorded>) -> Result<u64, ImportError> {
    let vault = &system.vault;
    let store = &system.store;
    let mut sealed = futures::stream::iter(chunk.chunks(SEAL_BATCH))
        .map(|batch| async move {
            let events = vault
                .seal_all(
                    batch
                        .iter()
                        .map(|r| (&r.event, Metadata::new(r.at, r.actor))),
                )
                .await?;
            let streams: Vec<StreamName> = batch.iter().map(|r| r.stream).collect();
            Ok::<_, ImportError>(runs(&streams, events))
        })
        .buffered(SEALING)
        .fuse();
    let mut written = 0;
    // Each append is polled once as soon as it is made, so it joins the store's queue before
    // the next one is made; outside the runtime's cooperative budget, which could otherwise
    // leave that first poll pending and let a later append overtake it.
    tokio::task::unconstrained(async {
        let mut inflight = FuturesOrdered::new();
        let mut sealing = true;
        while sealing || !inflight.is_empty() {
            tokio::select! {
                batch = sealed.next(), if sealing && inflight.len() < PIPELINE => {
                    let Some(appends) = batch else {
                        sealing = false;
                        continue;
                    };
                    for (stream, events) in appends? {
                        let n = events.len() as u64;
                        let mut append = Box::pin(async move {
                            store
                                .append(&stream, ExpectedVersion::Any, events)
                                .await
                                .map(|_| n)
                        });
                        match futures::poll!(append.as_mut()) {
                            Poll::Ready(result) => written += result?,
                            Poll::Pending => inflight.push_back(append),
                        }
                    }
                }
                Some(result) = inflight.next(), if !inflight.is_empty() => written += result?,
            }
        }
        Ok(written)
    })
    .await
}

/// As [`write`], but every event sealed on its own ([`KeyVault::seal`], 64 at once: a key
/// per new subject, each its own durable write) and appended once the whole chunk is sealed:
/// the import as it was, kept to compare with (`kring-bench --import-seal one-by-one`).
///
/// # Errors
/// [`ImportError`].
///
/// [`KeyVault::seal`]: kring_store::vault::KeyVault::seal
pub async fn write_one_by_one(system: &System, chunk: Vec<Recorded>) -> Result<u64, ImportError> {
    let vault = &system.vault;
    // Sealing creates a key per new subject (a durable write): many at once, results in order.
    let mut sealed = futures::stream::iter(chunk)
        .map(|r| async move {
            let meta = Metadata::new(r.at, r.actor);
            vault.seal(&r.event, meta).await.map(|e| (r.stream, e))
        })
        .buffered(SEALING_ONE_BY_ONE);
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
