//! Catch-up then live subscription to the global log, the same for every adapter.

use crate::{EventStore, Position, RecordedEvent, StoreError, DEFAULT_BATCH};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// How long a live subscriber waits without a wake-up before it looks anyway: a safety net for
/// a lost notification, not the way it normally learns of new events.
const SAFETY_POLL: Duration = Duration::from_secs(2);

/// Follows the global log from a checkpoint, in position order, each event once.
pub struct Subscription<S> {
    store: S,
    after: Position,
    buffer: VecDeque<RecordedEvent>,
    head: watch::Receiver<Position>,
    batch: usize,
}

impl<S: EventStore> Subscription<S> {
    /// A subscription delivering events after `after`.
    pub fn new(store: S, after: Position) -> Self {
        let head = store.watch_head();
        Self {
            store,
            after,
            buffer: VecDeque::new(),
            head,
            batch: DEFAULT_BATCH,
        }
    }

    /// The position of the last event delivered (the checkpoint to resume from).
    #[must_use]
    pub const fn checkpoint(&self) -> Position {
        self.after
    }

    /// The next event, waiting for one to be committed if the log is caught up.
    ///
    /// # Errors
    /// Backend failures; the subscription can be polled again afterwards.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.after = event.position;
                return Ok(event);
            }
            let batch = self.next_batch().await?;
            self.buffer.extend(batch);
            // next_batch advanced the checkpoint past the batch; rewind so that it only moves
            // as events are handed out one by one.
            if let Some(first) = self.buffer.front() {
                self.after = first.position - 1;
            }
        }
    }

    /// The next batch (at most the batch size), waiting while the log is caught up. The
    /// checkpoint moves past the whole batch.
    ///
    /// # Errors
    /// Backend failures; the subscription can be polled again afterwards.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        if !self.buffer.is_empty() {
            let batch: Vec<RecordedEvent> = self.buffer.drain(..).collect();
            if let Some(last) = batch.last() {
                self.after = last.position;
            }
            return Ok(batch);
        }
        loop {
            // Mark the head seen *before* reading, so a commit racing the read still wakes us.
            self.head.borrow_and_update();
            let batch = self.store.read_all(self.after, self.batch).await?;
            if let Some(last) = batch.last() {
                self.after = last.position;
                return Ok(batch);
            }
            match tokio::time::timeout(SAFETY_POLL, self.head.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => return Err(StoreError::Closed),
            }
        }
    }

    /// Sets how many events one read fetches.
    #[must_use]
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }
}
