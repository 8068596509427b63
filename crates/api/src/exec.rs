//! Commands: load an aggregate's event-sourced state, decide, seal, append.
//!
//! Every write goes the same way: read the aggregate's stream and fold it with the domain's
//! `evolve`, ask the domain's pure `decide` (with the school roster where the rule needs it),
//! seal each event's personal fields with the key vault, and append with the stream's version as
//! the expectation. A concurrency conflict means someone else wrote in between: the command is
//! decided once more on the fresh state (every Kring command is safe to re-decide: deciding
//! never has side effects) and appended again; a second conflict answers `409`.
//!
//! Folded states are cached per stream, and a command on a cached stream is first decided on the
//! cached state without reading the log at all: the append's expected version proves that state
//! current, and if it is not, the store refuses the append and the command goes the way above.
//! A refusal or an empty decision on the cached state is not trusted either (a stale state could
//! be its cause): it, too, is decided again on the state read from the log.
//!
//! School rosters are read on almost every command and only grow, so they are cached per school
//! and brought up to date by reading just the events after the cached version; callers asking
//! for the same roster at the same moment share one such read, as long as it began after they
//! asked.

use crate::error::{ApiError, ApiResult, Code};
use crate::idempotency::{self, CommandIds};
use chrono::{DateTime, Utc};
use kring_domain::school::{School, SchoolEvent};
use kring_domain::{Actor, Aggregate, DomainError, Event, SchoolId, StreamName};
use kring_store::vault::KeyVault;
use kring_store::{
    AppendOutcome, DynStore, EventStore, EventStoreExt, ExpectedVersion, Metadata, Position,
    RecordedEvent, StoreError, DEFAULT_BATCH,
};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Why an append failed: the stream moved on (decide again), or anything else.
#[derive(Debug)]
enum Failed {
    Conflict(StoreError),
    Other(ApiError),
}

impl From<ApiError> for Failed {
    fn from(e: ApiError) -> Self {
        Self::Other(e)
    }
}

impl From<Failed> for ApiError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Conflict(e) => e.into(),
            Failed::Other(e) => e,
        }
    }
}

/// An aggregate's state and the version it was folded up to (`None`: no stream yet).
#[derive(Debug, Clone, Default)]
pub struct Loaded<S> {
    /// The state.
    pub state: S,
    /// The stream's last version.
    pub version: Option<u64>,
}

impl<S> Loaded<S> {
    /// Whether the stream exists.
    #[must_use]
    pub const fn exists(&self) -> bool {
        self.version.is_some()
    }

    fn expected(&self) -> ExpectedVersion {
        self.version
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
    }
}

/// What a command wrote.
#[derive(Debug, Clone)]
pub struct Written<E> {
    /// The global position of its last event (what `?min_position=` waits for).
    pub position: Position,
    /// The events, as decided.
    pub events: Vec<E>,
}

/// Runs commands against the event log.
#[derive(Clone)]
pub struct Executor {
    store: DynStore,
    vault: Arc<KeyVault>,
    schools: Arc<Mutex<HashMap<SchoolId, Arc<Roster>>>>,
    states: Arc<Mutex<HashMap<StreamName, Cached>>>,
    appended: Arc<AtomicU64>,
}

/// One school's cached roster and the refreshes that keep it current.
///
/// Almost every command, and every authorised read, needs the current roster of its school,
/// and under load they ask at the same moment. A refresh that *began* after a caller asked
/// answers that caller as well as a read of its own would, so callers queue for the roster and
/// each refresh serves everyone who asked before it began: one read of the school's stream per
/// wave of callers instead of one per caller.
#[derive(Default)]
struct Roster {
    /// How many refreshes have begun.
    begun: AtomicU64,
    /// The roster and the number of the refresh that read it (0: none yet). Refreshes run
    /// while holding it.
    current: tokio::sync::Mutex<(u64, Loaded<Arc<School>>)>,
}

/// A folded aggregate state and the version it was folded up to, of any aggregate type.
type Cached = (Option<u64>, Arc<dyn Any + Send + Sync>);

/// Schools' rosters kept between requests; beyond this many schools the cache starts over.
pub const MAX_CACHED_SCHOOLS: usize = 10_000;

/// Folded states kept between commands; beyond this many streams the cache starts over.
const MAX_CACHED_STATES: usize = 20_000;

/// The stream version an expectation names (for an append that wrote nothing).
const fn expected_version(expected: ExpectedVersion) -> u64 {
    match expected {
        ExpectedVersion::Exact(v) => v,
        ExpectedVersion::Any | ExpectedVersion::NoStream => 0,
    }
}

fn decode(r: &RecordedEvent) -> ApiResult<Event> {
    Event::decode_str(&r.event_type, r.schema_version, &r.payload).map_err(|e| {
        ApiError::internal(format!(
            "event {} at {}/{} cannot be decoded: {e}",
            r.event_id, r.stream, r.version
        ))
    })
}

impl Executor {
    /// An executor over `store`, sealing with `vault`.
    #[must_use]
    pub fn new(store: DynStore, vault: Arc<KeyVault>) -> Self {
        Self {
            store,
            vault,
            schools: Arc::default(),
            states: Arc::default(),
            appended: Arc::default(),
        }
    }

    /// How many events this process appended.
    #[must_use]
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// The event log.
    #[must_use]
    pub const fn store(&self) -> &DynStore {
        &self.store
    }

    /// The key vault.
    #[must_use]
    pub const fn vault(&self) -> &Arc<KeyVault> {
        &self.vault
    }

    /// Folds `stream` into `loaded` from the version after it on, up to and including version
    /// `through` (to the end when `None`).
    async fn fold<A: Aggregate>(
        &self,
        stream: &StreamName,
        mut loaded: Loaded<A>,
        through: Option<u64>,
    ) -> ApiResult<Loaded<A>> {
        loop {
            let from = loaded.version.map_or(0, |v| v + 1);
            let batch = self.store.read_stream(stream, from, DEFAULT_BATCH).await?;
            let done = batch.len() < DEFAULT_BATCH;
            for r in &batch {
                if through.is_some_and(|t| r.version > t) {
                    return Ok(loaded);
                }
                if let Some(e) = A::pick(decode(r)?) {
                    loaded.state = loaded.state.evolve(&e);
                }
                loaded.version = Some(r.version);
            }
            if done {
                return Ok(loaded);
            }
        }
    }

    /// The current state of `stream`: the cached fold of it, brought up to date by reading
    /// only the events after the cached version (other processes may have appended).
    ///
    /// # Errors
    /// Store failures; an event this build cannot decode.
    pub async fn load<A: Aggregate>(&self, stream: &StreamName) -> ApiResult<Loaded<A>> {
        let cached = self.cached::<A>(stream)?.unwrap_or_default();
        let before = cached.version;
        let loaded = self.fold::<A>(stream, cached, None).await?;
        if loaded.version != before {
            self.remember::<A>(*stream, &loaded)?;
        }
        Ok(loaded)
    }

    /// The state of `stream` as this process last saw it, without reading the log: possibly
    /// behind it.
    fn cached<A: Aggregate>(&self, stream: &StreamName) -> ApiResult<Option<Loaded<A>>> {
        Ok(self
            .states
            .lock()
            .map_err(ApiError::internal)?
            .get(stream)
            .and_then(|(version, state)| {
                let state = Arc::clone(state).downcast::<A>().ok()?;
                Some(Loaded {
                    state: (*state).clone(),
                    version: *version,
                })
            }))
    }

    /// Keeps a folded state for the next command on the stream.
    fn remember<A: Aggregate>(&self, stream: StreamName, loaded: &Loaded<A>) -> ApiResult<()> {
        let mut states = self.states.lock().map_err(ApiError::internal)?;
        if states.len() >= MAX_CACHED_STATES && !states.contains_key(&stream) {
            states.clear();
        }
        let newer = states.get(&stream).is_none_or(|(v, _)| *v < loaded.version);
        if newer {
            states.insert(stream, (loaded.version, Arc::new(loaded.state.clone())));
        }
        Ok(())
    }

    /// The school's current roster: the cached one, brought up to date by a read of the events
    /// after its version that began after this call (callers asking together share that read;
    /// see `Roster`). Shared, not copied: a command reads it in place.
    ///
    /// # Errors
    /// `404` for an unknown school; store failures.
    pub async fn school(&self, school_id: SchoolId) -> ApiResult<Loaded<Arc<School>>> {
        let roster = {
            let mut schools = self.schools.lock().map_err(ApiError::internal)?;
            if schools.len() >= MAX_CACHED_SCHOOLS && !schools.contains_key(&school_id) {
                schools.clear();
            }
            Arc::clone(schools.entry(school_id).or_default())
        };
        let asked = roster.begun.load(Ordering::SeqCst);
        let mut current = roster.current.lock().await;
        let loaded = if current.0 > asked {
            // A refresh that began after this call (so it saw everything this call's own read
            // would have) has finished while this call waited.
            current.1.clone()
        } else {
            let refresh = roster.begun.fetch_add(1, Ordering::SeqCst) + 1;
            let loaded = self.refresh(school_id, current.1.clone()).await?;
            *current = (refresh, loaded.clone());
            loaded
        };
        drop(current);
        if !loaded.exists() {
            // An unknown school (a caller's made-up id, say) leaves nothing behind.
            if let Ok(mut schools) = self.schools.lock() {
                if schools
                    .get(&school_id)
                    .is_some_and(|cached| Arc::ptr_eq(cached, &roster))
                {
                    schools.remove(&school_id);
                }
            }
            return Err(ApiError::not_found(format!("school {school_id}")));
        }
        Ok(loaded)
    }

    /// How many schools' rosters this executor keeps (at most [`MAX_CACHED_SCHOOLS`], and
    /// only of schools that exist).
    #[must_use]
    pub fn cached_schools(&self) -> usize {
        self.schools.lock().map_or(0, |s| s.len())
    }

    /// Brings a roster up to date by reading the school's events after its version.
    async fn refresh(
        &self,
        school_id: SchoolId,
        mut loaded: Loaded<Arc<School>>,
    ) -> ApiResult<Loaded<Arc<School>>> {
        let stream = StreamName::school(school_id);
        loop {
            let from = loaded.version.map_or(0, |v| v + 1);
            let batch = self.store.read_stream(&stream, from, DEFAULT_BATCH).await?;
            let done = batch.len() < DEFAULT_BATCH;
            if !batch.is_empty() {
                // Copied only when it changed, and then once per refresh.
                let roster = Arc::make_mut(&mut loaded.state);
                for r in &batch {
                    if let Some(e) = School::pick(decode(r)?) {
                        *roster = std::mem::take(roster).evolve(&e);
                    }
                    loaded.version = Some(r.version);
                }
            }
            if done {
                return Ok(loaded);
            }
        }
    }

    /// Decides with `decide` on the current state of `stream` and appends what it decided,
    /// deciding once more on a concurrency conflict. An empty decision writes nothing and
    /// answers the log's head as position.
    ///
    /// # Errors
    /// The domain's refusal; `409 concurrency_conflict` after a second conflict; store and
    /// vault failures.
    pub async fn run<A, F>(
        &self,
        stream: StreamName,
        actor: Actor,
        correlation_id: Uuid,
        decide: F,
    ) -> ApiResult<Written<A::Event>>
    where
        A: Aggregate,
        F: Fn(&A, DateTime<Utc>) -> Result<Vec<A::Event>, DomainError> + Send + Sync,
    {
        let (written, _) = self
            .run_folded::<A, F>(stream, actor, correlation_id, decide)
            .await?;
        Ok(written)
    }

    /// Like [`Executor::run`] for a stream many write to at the same moment (a meeting round
    /// that guardians book together): decides again on every concurrency conflict, up to
    /// `attempts` times. Each conflict means another command on the stream was written, so
    /// with as many attempts as commands racing, every command settles: written, or refused by
    /// a rule on the state that includes the others.
    ///
    /// # Errors
    /// As [`Executor::run`]; `409 concurrency_conflict` only after `attempts` conflicts.
    pub async fn run_contended<A, F>(
        &self,
        stream: StreamName,
        actor: Actor,
        correlation_id: Uuid,
        attempts: u32,
        decide: F,
    ) -> ApiResult<Written<A::Event>>
    where
        A: Aggregate,
        F: Fn(&A, DateTime<Utc>) -> Result<Vec<A::Event>, DomainError> + Send + Sync,
    {
        let (written, _) = self
            .run_attempts::<A, F>(stream, actor, correlation_id, attempts, decide)
            .await?;
        Ok(written)
    }

    /// Like [`Executor::run`], and also the aggregate's state right after the command (for an
    /// `Idempotency-Key` answered again: right after the earlier request's events), folded
    /// from what was decided rather than read back.
    ///
    /// # Errors
    /// As [`Executor::run`].
    pub async fn run_folded<A, F>(
        &self,
        stream: StreamName,
        actor: Actor,
        correlation_id: Uuid,
        decide: F,
    ) -> ApiResult<(Written<A::Event>, A)>
    where
        A: Aggregate,
        F: Fn(&A, DateTime<Utc>) -> Result<Vec<A::Event>, DomainError> + Send + Sync,
    {
        self.run_attempts::<A, F>(stream, actor, correlation_id, 2, decide)
            .await
    }

    /// [`Executor::run_folded`] deciding on the state read from the log up to `attempts` times.
    async fn run_attempts<A, F>(
        &self,
        stream: StreamName,
        actor: Actor,
        correlation_id: Uuid,
        attempts: u32,
        decide: F,
    ) -> ApiResult<(Written<A::Event>, A)>
    where
        A: Aggregate,
        F: Fn(&A, DateTime<Utc>) -> Result<Vec<A::Event>, DomainError> + Send + Sync,
    {
        let ids = idempotency::next_command();
        if let Some((done, through)) = self.replay::<A>(ids).await? {
            let then = self
                .fold::<A>(&stream, Loaded::default(), Some(through))
                .await?;
            return Ok((done, then.state));
        }
        let (loaded, outcome, events) = match self
            .on_cached::<A, F>(stream, actor, correlation_id, ids, &decide)
            .await?
        {
            Some(done) => done,
            None => {
                self.decide_and_append(
                    stream,
                    actor,
                    (correlation_id, ids, attempts),
                    || self.load::<A>(&stream),
                    decide,
                )
                .await?
            }
        };
        let after = events.iter().fold(loaded.state, A::evolve);
        if !events.is_empty() {
            // What was just written is the stream's state now: no read next time.
            self.remember::<A>(
                stream,
                &Loaded {
                    state: after.clone(),
                    version: Some(outcome.stream_version),
                },
            )?;
        }
        Ok((
            Written {
                position: outcome.position,
                events,
            },
            after,
        ))
    }

    /// Decides on the state this process last saw of `stream` without reading the log, and
    /// appends with that state's version as the expectation. The store refuses the append if
    /// anything was written to the stream since, so only a current state can ever write: this
    /// saves the read of the stream on the common path, a process writing what it read last.
    ///
    /// `None` when that did not settle the command — nothing cached, a concurrency conflict, a
    /// refusal or an empty decision (either may be an artefact of a stale state, so neither is
    /// answered from it) — and the caller decides on the state read from the log, as if this
    /// had not been tried.
    async fn on_cached<A, F>(
        &self,
        stream: StreamName,
        actor: Actor,
        correlation_id: Uuid,
        ids: Option<CommandIds>,
        decide: &F,
    ) -> ApiResult<Option<(Loaded<A>, AppendOutcome, Vec<A::Event>)>>
    where
        A: Aggregate,
        F: Fn(&A, DateTime<Utc>) -> Result<Vec<A::Event>, DomainError> + Send + Sync,
    {
        let Some(cached) = self.cached::<A>(&stream)? else {
            return Ok(None);
        };
        let now = Utc::now();
        let events = match decide(&cached.state, now) {
            Ok(events) if !events.is_empty() => events,
            _ => return Ok(None),
        };
        match self
            .append(
                stream,
                cached.expected(),
                (actor, correlation_id, ids),
                now,
                &events,
            )
            .await
        {
            Ok(outcome) => Ok(Some((cached, outcome, events))),
            Err(Failed::Conflict(_)) => Ok(None),
            Err(Failed::Other(e)) => Err(e),
        }
    }

    /// Like [`Executor::run`] for a school's roster: decides on the cached, refreshed roster.
    ///
    /// # Errors
    /// As [`Executor::run`].
    pub async fn run_school<F>(
        &self,
        school_id: SchoolId,
        actor: Actor,
        correlation_id: Uuid,
        decide: F,
    ) -> ApiResult<Written<SchoolEvent>>
    where
        F: Fn(&School, DateTime<Utc>) -> Result<Vec<SchoolEvent>, DomainError> + Send + Sync,
    {
        let load = || async {
            match self.school(school_id).await {
                // Registering: the stream does not exist yet.
                Err(e) if e.code == Code::NotFound => Ok(Loaded::default()),
                other => other,
            }
        };
        let stream = StreamName::school(school_id);
        let ids = idempotency::next_command();
        if let Some((done, _)) = self.replay::<School>(ids).await? {
            return Ok(done);
        }
        let (_, outcome, events) = self
            .decide_and_append(stream, actor, (correlation_id, ids, 2), load, decide)
            .await?;
        Ok(Written {
            position: outcome.position,
            events,
        })
    }

    /// Loads with `load`, decides, appends at the loaded version; again on a conflict, up to
    /// `attempts` times in all.
    async fn decide_and_append<T, S, E, L, Fut, F>(
        &self,
        stream: StreamName,
        actor: Actor,
        (correlation_id, ids, attempts): (Uuid, Option<CommandIds>, u32),
        load: L,
        decide: F,
    ) -> ApiResult<(Loaded<S>, AppendOutcome, Vec<E>)>
    where
        T: ?Sized,
        S: std::borrow::Borrow<T>,
        E: Into<Event> + Clone,
        L: Fn() -> Fut,
        Fut: std::future::Future<Output = ApiResult<Loaded<S>>>,
        F: Fn(&T, DateTime<Utc>) -> Result<Vec<E>, DomainError>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let loaded = load().await?;
            let now = Utc::now();
            let events = decide(loaded.state.borrow(), now)?;
            let expected = loaded.expected();
            match self
                .append(stream, expected, (actor, correlation_id, ids), now, &events)
                .await
            {
                Ok(outcome) => return Ok((loaded, outcome, events)),
                Err(Failed::Conflict(_)) if attempt < attempts => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// What a request with an `Idempotency-Key` wrote with the command `ids`, if it ran before:
    /// its events as stored, the position of the last, and that event's stream version.
    async fn replay<A: Aggregate>(
        &self,
        ids: Option<CommandIds>,
    ) -> ApiResult<Option<(Written<A::Event>, u64)>> {
        let Some(ids) = ids else { return Ok(None) };
        let Some(first) = self.store.locate(ids.event_id(0)).await? else {
            return Ok(None);
        };
        let recorded = self
            .store
            .read_stream(&first.stream, first.version, DEFAULT_BATCH)
            .await?;
        let mut written = Written {
            position: first.position,
            events: Vec::new(),
        };
        let mut through = first.version;
        for (i, r) in recorded.iter().enumerate() {
            if r.event_id != ids.event_id(i) {
                break;
            }
            let event = A::pick(decode(r)?).ok_or_else(|| {
                ApiError::internal(format!(
                    "event {} of an earlier request with this Idempotency-Key is of another aggregate",
                    r.event_id
                ))
            })?;
            written.events.push(event);
            written.position = r.position;
            through = r.version;
        }
        Ok(Some((written, through)))
    }

    /// Seals and appends `events` (nothing for none: the head is answered), with the ids of
    /// `origin`'s command when the request has an `Idempotency-Key`.
    async fn append<E: Into<Event> + Clone>(
        &self,
        stream: StreamName,
        expected: ExpectedVersion,
        origin: (Actor, Uuid, Option<CommandIds>),
        now: DateTime<Utc>,
        events: &[E],
    ) -> Result<AppendOutcome, Failed> {
        let (actor, correlation_id, ids) = origin;
        if events.is_empty() {
            return Ok(AppendOutcome {
                stream_version: expected_version(expected),
                position: self.store.head().await.map_err(ApiError::from)?,
            });
        }
        let mut sealed = Vec::with_capacity(events.len());
        for event in events {
            let meta = Metadata {
                occurred_at: now,
                actor,
                correlation_id,
                causation_id: None,
            };
            let event: Event = event.clone().into();
            let mut new = self
                .vault
                .seal(&event, meta)
                .await
                .map_err(ApiError::from)?;
            if let Some(ids) = ids {
                new.event_id = ids.event_id(sealed.len());
            }
            sealed.push(new);
        }
        let n = sealed.len() as u64;
        let outcome = match self.store.append(&stream, expected, sealed).await {
            Ok(outcome) => outcome,
            // Matched before it becomes an answer: the callers decide again on fresh state.
            Err(e @ StoreError::Concurrency { .. }) => return Err(Failed::Conflict(e)),
            Err(e) => return Err(Failed::Other(e.into())),
        };
        self.appended.fetch_add(n, Ordering::Relaxed);
        Ok(outcome)
    }

    /// Every event of `stream`, decoded (for exports and audits).
    ///
    /// # Errors
    /// Store failures; undecodable events.
    pub async fn events_of(&self, stream: &StreamName) -> ApiResult<Vec<(RecordedEvent, Event)>> {
        let recorded = self.store.read_stream_to_end(stream).await?;
        recorded
            .into_iter()
            .map(|r| decode(&r).map(|e| (r, e)))
            .collect()
    }
}
