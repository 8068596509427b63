//! The event log in EventStoreDB / KurrentDB, through the `eventstore` gRPC client (v4).
//!
//! [`EsdbStore::connect`] takes an `esdb://…` or `esdb+discover://…` connection string, or the
//! same with a KurrentDB scheme (`kurrentdb://`, `kurrent://`, `kdb://`), e.g.
//! `esdb://admin:changeit@localhost:2113?tls=false`. The user needs read access to `$all` (an
//! admin, or a server started with `--insecure`).
//!
//! # The envelope
//!
//! One Kring event is one EventStoreDB event in the stream of the same name
//! (`child-<uuid>`, …): the event id is the server's event id, the stream version is the event's
//! revision, the event type is its type, and the payload is its data, byte for byte the canonical
//! JSON that was hashed (content type JSON). The rest of the envelope is the event's metadata, a
//! JSON object ([`EnvelopeMeta`]): `kring` (format 1), `schema_version`, `occurred_at`
//! (microseconds since the Unix epoch), `actor` (`person:<uuid>`, `operator`, `system`),
//! `$correlationId` and `$causationId` (the keys EventStoreDB's own tooling reads), `hash` (hex)
//! and `append_index` (the event's index within the append that wrote it). `recorded_at` is the
//! server's `created` timestamp, to the microsecond.
//!
//! # Positions
//!
//! Every event of the log has a `$all` position, a pair (commit, prepare) of byte offsets in the
//! transaction log. For events appended over gRPC (EventStoreDB 20.6 and later; there are no
//! explicit transactions there) the two are equal: each event commits itself, and its commit
//! position is its own log position, unique and in `$all` order. Only events written in explicit
//! transactions over the legacy TCP protocol share one commit position, and differ in prepare
//! position; this adapter never writes such events. So the adapter keys everything on the
//! **commit position**.
//!
//! The port's [`Position`] is not that byte offset itself, though: the conformance suite (and
//! callers) expect the events of one append to have consecutive positions, and `position − 1` to
//! be a valid checkpoint ("everything before this event"), while a read of `$all` can only start
//! at the exact offset of a record. The port position of the event at index `i` of an append
//! whose first event sits at log position `P` is therefore `P · 2¹⁶ + i + 1`
//! ([`encode_position`]):
//!
//! - strictly increasing in `$all` order (appends are contiguous in the log, and every record is
//!   longer than one byte), unique, consecutive within an append, never 0;
//! - any position handed out, and any such position minus one, decodes to `P`, where a read of
//!   `$all` can start, plus a slot telling which events of that append are already behind;
//! - it holds logs up to 128 TiB (positions stay below 2⁶³) and appends up to
//!   [`MAX_EVENTS_PER_APPEND`] events.
//!
//! A read that resumes in the middle of an append starts at that append's first event and skips
//! the events it already delivered, client-side.
//!
//! A position that this adapter did not hand out (nor one minus such a position) may not decode
//! to a record boundary; the server then refuses the read and [`EsdbStore::read_all`] returns a
//! [`StoreError::Backend`] naming the position.
//!
//! Finding `P` for an event costs nothing when the read saw the first event of its append (reads
//! of `$all` start there); otherwise (a stream read starting mid-append, [`EventStore::head`] on
//! a multi-event append, an append's own outcome) it takes one extra single-event read. Stream
//! reads need the server to report `$all` positions on stream reads, which it does from
//! EventStoreDB 22.6 on; an older server gets a clear error.
//!
//! `read_all(after, limit)` reads `$all` forward from `P` of `after` and skips system events
//! (`$`-prefixed streams or types), events of streams that are not Kring stream names (not part
//! of the Kring log), and everything at or below `after`. The server only exposes committed
//! events, in log order, so nothing can later appear behind a reader. [`EventStore::head`] reads
//! `$all` backwards to the last Kring event. [`EventStore::watch_head`] is fed by one background
//! `subscribe_to_all` (filtered server-side to non-system event types) plus this process's own
//! appends; if the subscription drops, the task wakes every watcher (they re-read) and
//! resubscribes.
//!
//! # Appends and the hash chain
//!
//! Each append first reads the stream's tail backwards (see idempotency below): its last event's
//! revision and hash. It checks the caller's expectation against that revision and returns
//! [`StoreError::Concurrency`] without writing when it fails; chains every new event with
//! [`NewEvent::chain_hash`] from that hash; and appends with `ExpectedRevision::Exact(tail)` (or
//! `NoStream`), the state it chained from. A wrong-expected-version answer means another append
//! slipped in between: for `NoStream`/`Exact(n)` that is the caller's conflict and maps to
//! [`StoreError::Concurrency`] with the actual revision the server reports (`None` when the
//! stream does not exist); for `Any` the adapter reads and chains again, up to
//! [`ANY_ATTEMPTS`] times with a short jittered back-off, and then gives up with
//! [`StoreError::Concurrency`] (nothing written). [`crate::plan::validate`] runs first (empty
//! appends, the 1 MiB payload limit, duplicate ids).
//!
//! # Idempotency
//!
//! A retried append (same event ids) returns its original [`AppendOutcome`] and writes nothing.
//! EventStoreDB itself only deduplicates by event id when the same ids arrive with the same
//! expected revision, so the adapter checks first: the tail scan collects the ids of the
//! stream's events recorded from [`IDEMPOTENCY_WINDOW`] before the append's earliest
//! `occurred_at` on, and applies the SQL adapters' rule (`match_stored`): all ids
//! stored, in order, at consecutive revisions → the original outcome; some stored, or not as one
//! run → [`StoreError::IdempotencyMismatch`]. Two retries racing each other are caught by the
//! server's own check (same ids, same expected revision).
//!
//! An event id belongs to one stream. EventStoreDB has no index by event id across streams, and
//! no write spans two streams atomically, so before an append the adapter **claims** each of its
//! ids: it creates the stream `kring-event-id-<uuid>` with `NoStream`, holding one
//! `codec::Claim` event that names the owning stream (with a fresh event id of its own, so the
//! server's deduplication never merges two claims). If the claim stream exists already, its
//! claim is read: the same stream passes (a retry, or an append that failed after its claims and
//! is now tried again), another stream fails the append with
//! [`StoreError::IdempotencyMismatch`] before anything is written. Two appends racing for one id
//! from different streams: the server lets one claim win. A claim whose append never happened
//! (a crash in between) keeps the id for its stream, which is exactly what a retry needs. The
//! claims cost one small extra write per event; they are foreign streams, so reads of the Kring
//! log pass over them.
//!
//! The one gap: the tail scan is bounded by time, not by the whole stream, so that an append to
//! a long stream stays cheap: an original copy is found as long as the server recorded it no earlier than an
//! hour before the event's `occurred_at`, i.e. unless the application's clock ran more than an
//! hour ahead of the server's when the event was decided. Back-dated `occurred_at` values only
//! widen the scan. (The claim still keeps such a retry in its own stream.)
//!
//! # Server requirements
//!
//! - EventStoreDB 22.6 or later, or KurrentDB (stream reads report `$all` positions).
//! - Read access to `$all` for the connecting user.
//! - A maximum append size (`MaxAppendSize`, default 1 MiB for the whole append) that fits the
//!   largest append Kring makes: one event may carry a 1 MiB payload plus its metadata, so run
//!   the server with at least 2 MiB (e.g. `KURRENTDB_MAX_APPEND_SIZE=2097152`, or
//!   `EVENTSTORE_MAX_APPEND_SIZE` for EventStoreDB); the conformance suite needs it.
//!
//! The `eventstore` crate installs `aws-lc-rs` as the process-wide rustls crypto provider when
//! it first connects, and panics (in its connection task) if another provider was installed
//! before: a process using this adapter must not install a different one first.

mod codec;

pub use codec::{
    actual_version, classify, decode_position, encode_position, expectation_met, expected_revision,
    normalise_url, revision_for, EnvelopeMeta, Kind, MAX_EVENTS_PER_APPEND, MAX_LOG_POSITION,
};

use crate::plan::{self, AppendRequest};
use crate::{
    AppendOutcome, EventHash, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StoreError,
};
use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use codec::{AppendTracker, Scanned};
use eventstore as es;
use futures::{StreamExt, TryStreamExt};
use kring_domain::StreamName;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often an `Any` append reads, chains and tries again when other appends keep slipping in
/// between its read and its write.
pub const ANY_ATTEMPTS: u32 = 10;

/// How far before an append's earliest `occurred_at` the idempotency scan looks for an original
/// copy (see the module docs).
pub const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(1);

/// Events fetched per page when reading `$all` backwards for the head.
const HEAD_PAGE: usize = 64;
/// The most events fetched per page when reading `$all` forwards.
const MAX_PAGE: usize = 4_096;
/// Event-id claims written concurrently for one append.
const CLAIMS_IN_FLIGHT: usize = 32;
/// Events fetched per page of the idempotency scan.
const SCAN_PAGE: usize = 128;
/// How long the head follower waits before resubscribing after its subscription failed.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(2);

/// The EventStoreDB / KurrentDB event store. Cheap to clone; all clones share one client and one
/// head follower, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct EsdbStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: es::Client,
    head_tx: Arc<watch::Sender<Position>>,
    head: watch::Receiver<Position>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl EsdbStore {
    /// Connects to the server at `url` (see the module docs for the accepted schemes), reads the
    /// log's head and starts following it.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for a malformed connection string or an unreachable server.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let url = normalise_url(url)?;
        let settings: es::ClientSettings = url.parse().map_err(|e| {
            StoreError::Backend(format!("invalid KurrentDB connection string: {e}"))
        })?;
        let client = es::Client::new(settings).map_err(backend)?;
        let initial = head_of(&client).await?;
        let (head_tx, head) = watch::channel(initial);
        let head_tx = Arc::new(head_tx);
        let follower = tokio::spawn(follow_head(client.clone(), Arc::clone(&head_tx)));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                head_tx,
                head,
                follower,
            }),
        })
    }

    fn client(&self) -> &es::Client {
        &self.inner.client
    }

    /// Reads the stream's tail backwards: its last event (the chain head), and the ids of the
    /// events recorded within the idempotency window of `events`.
    async fn scan_tail(&self, name: &str, events: &[NewEvent]) -> Result<Tail, StoreError> {
        let earliest = events
            .iter()
            .map(|e| e.occurred_at)
            .min()
            .unwrap_or_else(Utc::now);
        let bound = earliest - IDEMPOTENCY_WINDOW;
        let mut tail = Tail::default();
        let mut from = es::StreamPosition::End;
        loop {
            let options = es::ReadStreamOptions::default()
                .position(from)
                .backwards()
                .max_count(SCAN_PAGE);
            let mut read = match self.client().read_stream(name, &options).await {
                Ok(read) => read,
                Err(es::Error::ResourceNotFound) => return Ok(tail),
                Err(e) => return Err(backend(e)),
            };
            let mut seen = 0;
            let mut lowest = None;
            loop {
                let resolved = match read.next().await {
                    Ok(Some(resolved)) => resolved,
                    Ok(None) => break,
                    Err(es::Error::ResourceNotFound) => return Ok(tail),
                    Err(e) => return Err(backend(e)),
                };
                let Some(event) = resolved.event.as_ref() else {
                    continue;
                };
                seen += 1;
                lowest = Some(event.revision);
                let meta = EnvelopeMeta::parse(&event.custom_metadata)
                    .map_err(|reason| corrupt_in_stream(name, event.revision, reason))?;
                if tail.head.is_none() {
                    let hash = meta
                        .event_hash()
                        .map_err(|reason| corrupt_in_stream(name, event.revision, reason))?;
                    tail.head = Some((event.revision, hash));
                }
                if codec::recorded_at(event) < bound {
                    return Ok(tail);
                }
                tail.scanned.push(Scanned {
                    id: event.id,
                    revision: event.revision,
                    index: meta.append_index,
                });
            }
            match lowest {
                Some(revision) if seen == SCAN_PAGE && revision > 0 => {
                    from = es::StreamPosition::Position(revision - 1);
                }
                _ => return Ok(tail),
            }
        }
    }

    /// Claims every id of an append for `stream` before the append is written (see
    /// "Idempotency" in the module docs): a claim stream per id, created with `NoStream`. An id
    /// claimed before for the same stream passes (a retry, or an append that failed after its
    /// claims); one claimed for another stream fails the append, which then writes nothing.
    async fn claim_ids(&self, stream: &StreamName, ids: &[Uuid]) -> Result<(), StoreError> {
        futures::stream::iter(ids.iter().copied())
            .map(|id| self.claim_id(stream, id))
            .buffer_unordered(CLAIMS_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn claim_id(&self, stream: &StreamName, id: Uuid) -> Result<(), StoreError> {
        let name = codec::claim_stream(id);
        let options =
            es::AppendToStreamOptions::default().expected_revision(es::ExpectedRevision::NoStream);
        match self
            .client()
            .append_to_stream(name.as_str(), &options, codec::claim_data(stream)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(es::Error::WrongExpectedVersion { .. }) => {
                let options = es::ReadStreamOptions::default()
                    .position(es::StreamPosition::Start)
                    .forwards()
                    .max_count(1);
                let mut read = self
                    .client()
                    .read_stream(name.as_str(), &options)
                    .await
                    .map_err(backend)?;
                match read.next().await.map_err(backend)?.and_then(|r| r.event) {
                    Some(claim) => codec::check_claim(id, &claim.data, stream),
                    None => Err(corrupt_in_stream(&name, 0, "no claim event".into())),
                }
            }
            Err(e) => Err(backend(e)),
        }
    }

    /// The original outcome of an append whose events are all stored already.
    async fn original_outcome(
        &self,
        name: &str,
        stored: codec::StoredAppend,
    ) -> Result<AppendOutcome, StoreError> {
        let first = first_position_of(self.client(), name, stored.revision, stored.index).await?;
        Ok(AppendOutcome {
            stream_version: stored.revision,
            position: encode(first, stored.index)?,
        })
    }

    fn bump_head(&self, position: Position) {
        self.inner.head_tx.send_if_modified(|head| {
            if position > *head {
                *head = position;
                true
            } else {
                false
            }
        });
    }
}

/// What the tail scan of an append found.
#[derive(Debug, Default)]
struct Tail {
    /// The last event's revision and hash; `None`: the stream does not exist.
    head: Option<(u64, EventHash)>,
    /// The events within the idempotency window, newest first.
    scanned: Vec<Scanned>,
}

#[async_trait]
impl EventStore for EsdbStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let mut request = AppendRequest {
            stream: *stream,
            expected,
            events,
        };
        plan::validate(&mut request)?;
        let events = request.events;
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::Backend(format!(
                "an append to KurrentDB carries at most {MAX_EVENTS_PER_APPEND} events, not {}",
                events.len()
            )));
        }
        let name = stream.to_string();
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        self.claim_ids(stream, &ids).await?;
        let mut actual = None;
        for attempt in 0..ANY_ATTEMPTS {
            let tail = self.scan_tail(&name, &events).await?;
            if let Some(stored) = codec::match_stored(&ids, &tail.scanned)? {
                return self.original_outcome(&name, stored).await;
            }
            actual = tail.head.map(|(revision, _)| revision);
            if !expectation_met(expected, actual) {
                return Err(StoreError::Concurrency {
                    stream: *stream,
                    expected,
                    actual,
                });
            }
            let first_version = actual.map_or(0, |v| v + 1);
            let mut previous = tail.head.map_or(EventHash::GENESIS, |(_, hash)| hash);
            let mut data = Vec::with_capacity(events.len());
            for (index, event) in (0_u64..).zip(&events) {
                let hash = event.chain_hash(stream, first_version + index, &previous);
                data.push(codec::event_data(event, &hash, index)?);
                previous = hash;
            }
            let options =
                es::AppendToStreamOptions::default().expected_revision(revision_for(actual));
            match self
                .client()
                .append_to_stream(name.as_str(), &options, data)
                .await
            {
                Ok(_) => {
                    let last_index = events.len() as u64 - 1;
                    let first = first_position_of(
                        self.client(),
                        &name,
                        first_version + last_index,
                        last_index,
                    )
                    .await?;
                    let outcome = AppendOutcome {
                        stream_version: first_version + last_index,
                        position: encode(first, last_index)?,
                    };
                    self.bump_head(outcome.position);
                    return Ok(outcome);
                }
                Err(es::Error::WrongExpectedVersion { current, .. }) => {
                    actual = actual_version(current);
                    if expected != ExpectedVersion::Any {
                        return Err(StoreError::Concurrency {
                            stream: *stream,
                            expected,
                            actual,
                        });
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Err(StoreError::Concurrency {
            stream: *stream,
            expected,
            actual,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let name = stream.to_string();
        let options = es::ReadStreamOptions::default()
            .position(es::StreamPosition::Position(from))
            .forwards()
            .max_count(limit);
        let mut read = match self.client().read_stream(name.as_str(), &options).await {
            Ok(read) => read,
            Err(es::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut tracker = AppendTracker::default();
        let mut out = Vec::new();
        loop {
            let resolved = match read.next().await {
                Ok(Some(resolved)) => resolved,
                Ok(None) => break,
                Err(es::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(backend(e)),
            };
            let Some(event) = resolved.event.as_ref() else {
                continue;
            };
            out.push(self.kring_event(*stream, event, &mut tracker).await?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (log, _) = decode_position(after);
        let mut from = if after == 0 {
            es::StreamPosition::Start
        } else {
            es::StreamPosition::Position(es::Position {
                commit: log,
                prepare: log,
            })
        };
        // The page is a little larger than the limit: system events are filtered out here.
        let page = limit.saturating_add(32).min(MAX_PAGE);
        let mut skip = None;
        let mut tracker = AppendTracker::default();
        let mut out = Vec::new();
        loop {
            let options = es::ReadAllOptions::default()
                .position(from)
                .forwards()
                .max_count(page);
            let mut read = self
                .client()
                .read_all(&options)
                .await
                .map_err(|e| read_all_error(after, &e))?;
            let mut seen = 0;
            let mut last = None;
            while let Some(resolved) = read.next().await.map_err(|e| read_all_error(after, &e))? {
                seen += 1;
                let Some(event) = resolved.event.as_ref() else {
                    continue;
                };
                last = Some(event.position);
                if skip == Some(event.position) {
                    continue;
                }
                let Kind::Kring(stream) = classify(&event.stream_id, &event.event_type) else {
                    continue;
                };
                let recorded = self.kring_event(stream, event, &mut tracker).await?;
                if recorded.position <= after {
                    continue;
                }
                out.push(recorded);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match last {
                Some(position) if seen >= page => {
                    from = es::StreamPosition::Position(position);
                    skip = Some(position);
                }
                _ => return Ok(out),
            }
        }
    }

    async fn head(&self) -> Result<Position, StoreError> {
        head_of(self.client()).await
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.inner.head.clone()
    }

    /// EventStoreDB finds events by stream, not by id: always `None`. A retried append with
    /// the same event ids is still recognised by EventStoreDB's own idempotent writes.
    async fn locate(&self, _event_id: uuid::Uuid) -> Result<Option<crate::StoredId>, StoreError> {
        Ok(None)
    }

    /// EventStoreDB assigns `$all` positions after the write, so no event can carry a hash of
    /// its predecessor in the global order, and positions are not dense.
    fn keeps_global_chain(&self) -> bool {
        false
    }
}

impl EsdbStore {
    /// The Kring event that `event` of `stream` is, with its port position.
    async fn kring_event(
        &self,
        stream: StreamName,
        event: &es::RecordedEvent,
        tracker: &mut AppendTracker,
    ) -> Result<RecordedEvent, StoreError> {
        let meta = EnvelopeMeta::parse(&event.custom_metadata)
            .map_err(|reason| corrupt_in_stream(&event.stream_id, event.revision, reason))?;
        let position = position_of(self.client(), event, &meta, tracker).await?;
        codec::recorded_event(stream, event, &meta, position)
    }
}

/// The port position of `event` (carrying `meta`), using what `tracker` saw of its append and
/// one lookup when it saw nothing.
async fn position_of(
    client: &es::Client,
    event: &es::RecordedEvent,
    meta: &EnvelopeMeta,
    tracker: &mut AppendTracker,
) -> Result<Position, StoreError> {
    let commit = commit_position(event)?;
    let index = meta.append_index;
    let first = match tracker.first_of(&event.stream_id, event.revision, index, commit) {
        Some(first) => first,
        None => {
            let first = first_position_of(client, &event.stream_id, event.revision, index).await?;
            tracker.remember(&event.stream_id, event.revision, index, first);
            first
        }
    };
    encode(first, index)
}

/// The log position of the first event of the append that wrote `revision` of `stream` as its
/// `index`th event.
async fn first_position_of(
    client: &es::Client,
    stream: &str,
    revision: u64,
    index: u64,
) -> Result<u64, StoreError> {
    let first = revision.checked_sub(index).ok_or_else(|| {
        corrupt_in_stream(
            stream,
            revision,
            format!("append index {index} exceeds its revision"),
        )
    })?;
    let options = es::ReadStreamOptions::default()
        .position(es::StreamPosition::Position(first))
        .forwards()
        .max_count(1);
    let mut read = client
        .read_stream(stream, &options)
        .await
        .map_err(backend)?;
    let event = loop {
        match read.next().await.map_err(backend)? {
            Some(resolved) => {
                if let Some(event) = resolved.event {
                    break event;
                }
            }
            None => {
                return Err(corrupt_in_stream(
                    stream,
                    revision,
                    format!("the first event of its append (revision {first}) is missing"),
                ))
            }
        }
    };
    if event.revision != first {
        return Err(corrupt_in_stream(
            stream,
            revision,
            format!(
                "the first event of its append (revision {first}) is missing (truncated stream?)"
            ),
        ));
    }
    commit_position(&event)
}

/// The last position of the Kring log (0 when it has no event yet).
async fn head_of(client: &es::Client) -> Result<Position, StoreError> {
    let mut from = es::StreamPosition::End;
    let mut skip = None;
    loop {
        let options = es::ReadAllOptions::default()
            .position(from)
            .backwards()
            .max_count(HEAD_PAGE);
        let mut read = client.read_all(&options).await.map_err(backend)?;
        let mut seen = 0;
        let mut last = None;
        while let Some(resolved) = read.next().await.map_err(backend)? {
            seen += 1;
            let Some(event) = resolved.event.as_ref() else {
                continue;
            };
            last = Some(event.position);
            if skip == Some(event.position) {
                continue;
            }
            if let Kind::Kring(_) = classify(&event.stream_id, &event.event_type) {
                let meta = EnvelopeMeta::parse(&event.custom_metadata).map_err(|reason| {
                    corrupt_in_stream(&event.stream_id, event.revision, reason)
                })?;
                return position_of(client, event, &meta, &mut AppendTracker::default()).await;
            }
        }
        match last {
            Some(position) if seen >= HEAD_PAGE => {
                from = es::StreamPosition::Position(position);
                skip = Some(position);
            }
            _ => return Ok(0),
        }
    }
}

/// Follows `$all` live and moves the head watch; runs until the store is dropped.
async fn follow_head(client: es::Client, head: Arc<watch::Sender<Position>>) {
    loop {
        let options = es::SubscribeToAllOptions::default()
            .position(es::StreamPosition::End)
            .filter(es::SubscriptionFilter::on_event_type().exclude_system_events())
            .retry_options(
                es::RetryOptions::default()
                    .retry_forever()
                    .retry_delay(RESUBSCRIBE_DELAY),
            );
        let mut subscription = client.subscribe_to_all(&options).await;
        let mut tracker = AppendTracker::default();
        while let Ok(resolved) = subscription.next().await {
            let Some(event) = resolved.event.as_ref() else {
                continue;
            };
            if !matches!(
                classify(&event.stream_id, &event.event_type),
                Kind::Kring(_)
            ) {
                continue;
            }
            let position = match EnvelopeMeta::parse(&event.custom_metadata) {
                Ok(meta) => position_of(&client, event, &meta, &mut tracker).await.ok(),
                Err(_) => None,
            };
            match position {
                Some(position) => {
                    head.send_if_modified(|h| {
                        if position > *h {
                            *h = position;
                            true
                        } else {
                            false
                        }
                    });
                }
                // Something was committed even if its position is unknown: wake the watchers,
                // they read for themselves.
                None => head.send_modify(|_| {}),
            }
        }
        // Events may have been missed while the subscription was down: wake every watcher so
        // that it reads, then subscribe again.
        head.send_modify(|_| {});
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

/// The `$all` commit position of `event`, which is its own log position (see the module docs).
fn commit_position(event: &es::RecordedEvent) -> Result<u64, StoreError> {
    if event.position.commit == u64::MAX {
        return Err(StoreError::Backend(format!(
            "the server reports no $all position for {}@{}: stream reads report it from \
             EventStoreDB 22.6 on, which this adapter requires",
            event.stream_id, event.revision
        )));
    }
    Ok(event.position.commit)
}

fn encode(first: u64, index: u64) -> Result<Position, StoreError> {
    encode_position(first, index).ok_or_else(|| {
        StoreError::Backend(format!(
            "log position {first} (index {index}) is beyond what a Kring position can encode \
             ({MAX_LOG_POSITION} bytes of log, {MAX_EVENTS_PER_APPEND} events per append)"
        ))
    })
}

fn backend(e: es::Error) -> StoreError {
    StoreError::Backend(format!("KurrentDB: {e}"))
}

fn read_all_error(after: Position, e: &es::Error) -> StoreError {
    if after == 0 {
        return backend(e.clone());
    }
    StoreError::Backend(format!(
        "KurrentDB: reading $all after position {after} failed: {e} (only positions this store \
         handed out, and those minus one, are readable)"
    ))
}

fn corrupt_in_stream(stream: &str, revision: u64, reason: String) -> StoreError {
    StoreError::Corrupt {
        position: 0,
        reason: format!("{stream}@{revision}: {reason}"),
    }
}

/// A short, jittered pause before an `Any` append tries again.
fn backoff(attempt: u32) -> Duration {
    // The random tail of a fresh v7 id is jitter enough.
    let jitter = u64::from(Uuid::now_v7().as_bytes()[15] % 8);
    Duration::from_millis((1_u64 << attempt.min(6)) + jitter)
}
