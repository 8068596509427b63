//! Bulk import: a generated log sealed through the key vault and appended, pipelined.
//!
//! The log is sealed in batches ([`KeyVault::seal_all`]: the keys of a batch's new subjects
//! are created in one transaction), while the batches before it are being appended, one
//! pipeline from the first chunk to the last. Consecutive events of one stream go in one
//! append, and a batch's appends go to the store together ([`EventStore::append_many`]: one
//! job for its writer, which group-commits them). The batches are queued in log order, so the
//! global order is the generated order (the `import_keeps_the_log_order` test pins it).
//!
//! [`KeyVault::seal_all`]: kring_store::vault::KeyVault::seal_all

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use kring_domain::simulation::workload::Workload;
use kring_domain::simulation::Recorded;
use kring_domain::StreamName;
use kring_projections::System;
use kring_store::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

/// Appends in flight at once ([`write_one_by_one`]).
const PIPELINE: usize = 256;
/// Sealed batches being appended at once ([`write`]), each as one `append_many`.
const APPENDING: usize = 4;
/// Events sealed together: their new subjects' keys are one durable write.
const SEAL_BATCH: usize = 1024;
/// Batches being sealed at once (some wait for their keys while others are encrypted).
const SEALING: usize = 4;
/// Events being sealed at once by [`write_one_by_one`].
const SEALING_ONE_BY_ONE: usize = 64;

/// The chunks of `workload`, generated on a thread of its own at most two chunks ahead of
/// the import; the thread gives the workload back, with the seconds it spent generating, once
/// the stream has ended.
pub fn generated(
    mut workload: Workload,
) -> (
    impl futures::Stream<Item = Vec<Recorded>> + Send,
    std::thread::JoinHandle<(Workload, f64)>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let generator = std::thread::spawn(move || {
        let mut secs = 0.0;
        loop {
            let start = Instant::now();
            let Some(chunk) = workload.next() else { break };
            secs += start.elapsed().as_secs_f64();
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
        (workload, secs)
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (chunks, generator)
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Sealing failed.
    #[error("sealing: {0}")]
    Vault(#[from] kring_store::vault::VaultError),
    /// A sealing task ended without an answer (it panicked).
    #[error("sealing: {0}")]
    Sealing(String),
    /// Appending failed.
    #[error("appending: {0}")]
    Store(#[from] kring_store::StoreError),
}

/// Consecutive events of one stream as one append.
fn runs(streams: &[StreamName], events: Vec<NewEvent>) -> Vec<AppendRequest> {
    let mut appends: Vec<AppendRequest> = Vec::new();
    for (stream, event) in streams.iter().zip(events) {
        match appends.last_mut() {
            Some(last) if last.stream == *stream => last.events.push(event),
            _ => appends.push(AppendRequest {
                stream: *stream,
                expected: ExpectedVersion::Any,
                events: vec![event],
            }),
        }
    }
    appends
}

/// Seals and appends every chunk of `chunks`, one pipeline from the first to the last; returns
/// how many events were written.
///
/// # Errors
/// [`ImportError`].
pub async fn write(
    system: &System,
    chunks: impl futures::Stream<Item = Vec<Recorded>> + Send,
) -> Result<u64, ImportError> {
    let store = &system.store;
    let batches = chunks.flat_map(|chunk| {
        let mut batches = Vec::with_capacity(chunk.len().div_ceil(SEAL_BATCH));
        let mut chunk = chunk.into_iter().peekable();
        while chunk.peek().is_some() {
            batches.push(chunk.by_ref().take(SEAL_BATCH).collect::<Vec<_>>());
        }
        futures::stream::iter(batches)
    });
    // Each batch is sealed in a task of its own, so batches are encrypted on every core while
    // others wait for their keys; their results are taken in log order.
    let mut sealed = std::pin::pin!(batches
        .map(|batch| {
            let vault = Arc::clone(&system.vault);
            tokio::spawn(async move {
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
        })
        .buffered(SEALING)
        .map(|joined| joined.unwrap_or_else(|e| Err(ImportError::Sealing(e.to_string()))))
        .fuse());
    let mut written = 0;
    // Each batch's appends are polled once as soon as they are made, so they join the store's
    // queue before the next batch's; outside the runtime's cooperative budget, which could
    // otherwise leave that first poll pending and let a later batch overtake it.
    tokio::task::unconstrained(async {
        let mut inflight = FuturesOrdered::new();
        let mut sealing = true;
        while sealing || !inflight.is_empty() {
            tokio::select! {
                batch = sealed.next(), if sealing && inflight.len() < APPENDING => {
                    let Some(appends) = batch else {
                        sealing = false;
                        continue;
                    };
                    let appends = appends?;
                    let n: u64 = appends.iter().map(|a| a.events.len() as u64).sum();
                    let mut append = Box::pin(async move {
                        for outcome in store.append_many(appends).await {
                            outcome?;
                        }
                        Ok::<_, ImportError>(n)
                    });
                    match futures::poll!(append.as_mut()) {
                        Poll::Ready(result) => written += result?,
                        Poll::Pending => inflight.push_back(append),
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
    let mut streams = Vec::new();
    let mut events = Vec::new();
    while let Some(result) = sealed.next().await {
        let (stream, event) = result?;
        streams.push(stream);
        events.push(event);
    }
    let written = events.len() as u64;
    let store = &system.store;
    // Each append is polled once as soon as it is made, so it joins the store's queue before
    // the next one is made; outside the runtime's cooperative budget, which could otherwise
    // leave that first poll pending and let a later append overtake it.
    tokio::task::unconstrained(async {
        let mut inflight = FuturesOrdered::new();
        for AppendRequest {
            stream,
            expected,
            events,
        } in runs(&streams, events)
        {
            let mut append = Box::pin(async move { store.append(&stream, expected, events).await });
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
