//! The command executor's cached states: two executors on one store (two API instances) each
//! see what the other wrote, and decide on it.
#![allow(clippy::unwrap_used)]

use kring_api::exec::Executor;
use kring_domain::child;
use kring_domain::child::{ChildEvent, ConsentDecided};
use kring_domain::consent::ConsentMethod;
use kring_domain::{Actor, ChildId, PersonId, Purpose, SchoolId, StreamName};
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{KeyVault, MasterKey};
use kring_store::{DynStore, EventStore};
use std::sync::Arc;

fn decided(child: ChildId, guardian: PersonId, granted: bool) -> ChildEvent {
    ChildEvent::ConsentDecided(ConsentDecided {
        child_id: child,
        school_id: SchoolId::generate(),
        purpose: Purpose::GroupCommunication,
        granted,
        guardian_id: guardian,
        policy_version: 1,
        method: ConsentMethod::App,
        at: chrono::Utc::now(),
        recorded_by: None,
    })
}

fn latest(state: &kring_domain::child::Child, guardian: PersonId) -> Option<bool> {
    state
        .consents
        .decisions(Purpose::GroupCommunication)
        .and_then(|d| d.get(&guardian))
        .map(|d| d.granted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_on_one_store_see_each_others_writes() {
    let (_dir, store, a, b) = two_executors().await;
    let child = ChildId::generate();
    let stream = StreamName::child(child);
    let (mum, dad) = (PersonId::generate(), PersonId::generate());
    let actor = Actor::System;
    let id = uuid::Uuid::now_v7();

    a.run::<child::Child, _>(stream, actor, id, |_, _| {
        Ok(vec![decided(child, mum, true)])
    })
    .await
    .unwrap();
    // A caches the state it wrote; B has never seen the stream and reads it.
    let seen_by_b = b.load::<child::Child>(&stream).await.unwrap();
    assert_eq!(seen_by_b.version, Some(0));
    assert_eq!(latest(&seen_by_b.state, mum), Some(true));
    b.run::<child::Child, _>(stream, actor, id, |_, _| {
        Ok(vec![decided(child, dad, false)])
    })
    .await
    .unwrap();
    // A's cache is behind: it reads only the tail, and sees B's decision.
    let seen_by_a = a.load::<child::Child>(&stream).await.unwrap();
    assert_eq!(seen_by_a.version, Some(1));
    assert_eq!(latest(&seen_by_a.state, mum), Some(true));
    assert_eq!(latest(&seen_by_a.state, dad), Some(false));
    // A's next command decides on that refreshed state.
    a.run::<child::Child, _>(stream, actor, id, |state, _| {
        assert_eq!(
            latest(state, dad),
            Some(false),
            "decided on the fresh state"
        );
        Ok(vec![decided(child, mum, false)])
    })
    .await
    .unwrap();
    let events = store.read_stream(&stream, 0, 100).await.unwrap();
    assert_eq!(
        events.len(),
        3,
        "one event per command, none lost or doubled"
    );
}

/// A fresh SQLite event log in `dir`.
async fn sqlite_store(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(dir.join("events.db")).await.unwrap()
}

/// A key vault beside the log in `dir`.
async fn vault(dir: &std::path::Path) -> Arc<KeyVault> {
    Arc::new(
        KeyVault::open_sqlite(&dir.join("events.db"), &MasterKey::generate())
            .await
            .unwrap(),
    )
}

/// Two executors (two API instances) on one fresh SQLite store, with one vault.
async fn two_executors() -> (tempfile::TempDir, DynStore, Executor, Executor) {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(sqlite_store(dir.path()).await);
    let vault = vault(dir.path()).await;
    let a = Executor::new(store.clone(), Arc::clone(&vault));
    let b = Executor::new(store.clone(), Arc::clone(&vault));
    (dir, store, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_a_stale_cached_state_is_refused_by_the_store_and_decided_again() {
    let (_dir, store, a, b) = two_executors().await;
    let child = ChildId::generate();
    let stream = StreamName::child(child);
    let (mum, dad) = (PersonId::generate(), PersonId::generate());
    let id = uuid::Uuid::now_v7();
    a.run::<child::Child, _>(stream, Actor::System, id, |_, _| {
        Ok(vec![decided(child, mum, true)])
    })
    .await
    .unwrap();
    // B writes behind A's back: A's cached state (version 0) is now stale.
    b.run::<child::Child, _>(stream, Actor::System, id, |_, _| {
        Ok(vec![decided(child, dad, false)])
    })
    .await
    .unwrap();
    // A decides first on what it cached; the store refuses that append (the stream moved on),
    // and A decides again on the state read from the log.
    let seen = std::sync::Mutex::new(Vec::new());
    let written = a
        .run::<child::Child, _>(stream, Actor::System, id, |state, _| {
            seen.lock().unwrap().push(latest(state, dad));
            Ok(vec![decided(child, mum, false)])
        })
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None, Some(false)],
        "first the stale cached state, then the fresh one"
    );
    let events = store.read_stream(&stream, 0, 100).await.unwrap();
    assert_eq!(events.len(), 3, "the refused append wrote nothing");
    assert_eq!(written.position, events[2].position);
    // And A's cache now holds the state after its own write: the next command needs no read
    // and sees all three decisions.
    let states = std::sync::Mutex::new(Vec::new());
    a.run::<child::Child, _>(stream, Actor::System, id, |state, _| {
        states
            .lock()
            .unwrap()
            .push((latest(state, mum), latest(state, dad)));
        Ok(vec![decided(child, dad, true)])
    })
    .await
    .unwrap();
    assert_eq!(*states.lock().unwrap(), vec![(Some(false), Some(false))]);
    assert_eq!(store.read_stream(&stream, 0, 100).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_do_on_a_stale_cached_state_is_decided_again_on_the_log() {
    let (_dir, store, a, b) = two_executors().await;
    let child = ChildId::generate();
    let stream = StreamName::child(child);
    let mum = PersonId::generate();
    let id = uuid::Uuid::now_v7();
    // "Grant, unless already granted": a command whose answer depends on the state.
    let grant = |state: &kring_domain::child::Child, _| {
        Ok(if latest(state, mum) == Some(true) {
            Vec::new()
        } else {
            vec![decided(child, mum, true)]
        })
    };
    a.run::<child::Child, _>(stream, Actor::System, id, grant)
        .await
        .unwrap();
    b.run::<child::Child, _>(stream, Actor::System, id, |_, _| {
        Ok(vec![decided(child, mum, false)])
    })
    .await
    .unwrap();
    // On A's stale cache the consent is still granted, so "nothing to do" — which would be
    // wrong: the log says withdrawn. A must grant again.
    let written = a
        .run::<child::Child, _>(stream, Actor::System, id, grant)
        .await
        .unwrap();
    assert_eq!(written.events.len(), 1, "granted again, on the fresh state");
    let events = store.read_stream(&stream, 0, 100).await.unwrap();
    assert_eq!(events.len(), 3);
    let state = b.load::<child::Child>(&stream).await.unwrap();
    assert_eq!(latest(&state.state, mum), Some(true));
}

/// The real store, counting reads of streams (to see how many reads the roster cache makes).
struct Counting {
    inner: DynStore,
    stream_reads: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl EventStore for Counting {
    async fn append(
        &self,
        stream: &StreamName,
        expected: kring_store::ExpectedVersion,
        events: Vec<kring_store::NewEvent>,
    ) -> Result<kring_store::AppendOutcome, kring_store::StoreError> {
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        limit: usize,
    ) -> Result<Vec<kring_store::RecordedEvent>, kring_store::StoreError> {
        self.stream_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read_stream(stream, from, limit).await
    }

    async fn read_all(
        &self,
        after: kring_store::Position,
        limit: usize,
    ) -> Result<Vec<kring_store::RecordedEvent>, kring_store::StoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn head(&self) -> Result<kring_store::Position, kring_store::StoreError> {
        self.inner.head().await
    }

    fn watch_head(&self) -> tokio::sync::watch::Receiver<kring_store::Position> {
        self.inner.watch_head()
    }

    fn keeps_global_chain(&self) -> bool {
        self.inner.keeps_global_chain()
    }

    async fn locate(
        &self,
        event_id: uuid::Uuid,
    ) -> Result<Option<kring_store::StoredId>, kring_store::StoreError> {
        self.inner.locate(event_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_roster_answer_includes_what_was_written_before_it_was_asked_for() {
    use kring_domain::access::Subject;
    use kring_domain::school::{
        SchoolEvent, SchoolRegistered, SchoolSettings, StaffJoined, StaffRole,
    };
    use kring_domain::{GroupId, Sealed};
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting {
        inner: Arc::new(sqlite_store(dir.path()).await),
        stream_reads: std::sync::atomic::AtomicU64::new(0),
    });
    let store: DynStore = counting.clone();
    let exec = Executor::new(store, vault(dir.path()).await);
    let school_id = SchoolId::generate();
    exec.run_school(school_id, Actor::Operator, uuid::Uuid::now_v7(), |_, _| {
        Ok(vec![SchoolEvent::SchoolRegistered(SchoolRegistered {
            school_id,
            name: "De Linde".into(),
            brin: "00AA".into(),
            school_group_id: GroupId::generate(),
            settings: SchoolSettings::default(),
        })])
    })
    .await
    .unwrap();
    // 16 callers at once, each 10 times: add a staff member (through the executor, as the API
    // does), then ask for the roster, which must show that member: a refresh that began before
    // the write would not.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let exec = exec.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    let person_id = PersonId::generate();
                    let joined = SchoolEvent::StaffJoined(StaffJoined {
                        school_id,
                        person_id,
                        role: StaffRole::Teacher,
                        display_name: Sealed::new(Subject::Person(person_id), "Juf".into()),
                        email: Sealed::new(Subject::Person(person_id), "juf@example.org".into()),
                        identity: None,
                    });
                    // Sixteen writers on one stream conflict: retry as a client would (a
                    // roster that never catches up would conflict for ever: give up then).
                    for attempt in 0.. {
                        assert!(attempt < 1000, "no progress: the roster never caught up");
                        let written = exec
                            .run_school(school_id, Actor::Operator, uuid::Uuid::now_v7(), |_, _| {
                                Ok(vec![joined.clone()])
                            })
                            .await;
                        match written {
                            Ok(_) => break,
                            Err(e) if e.code == kring_api::Code::ConcurrencyConflict => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    let roster = exec.school(school_id).await.unwrap();
                    assert!(
                        roster.state.staff.contains_key(&person_id),
                        "a roster asked for after a write shows it"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let roster = exec.school(school_id).await.unwrap();
    assert_eq!(roster.state.staff.len(), 160);
    assert_eq!(roster.version, Some(160));
    // Sharing: 16 callers asking at once, 10 times each, share refreshes.
    let before = counting
        .stream_reads
        .load(std::sync::atomic::Ordering::SeqCst);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let exec = exec.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    assert_eq!(exec.school(school_id).await.unwrap().version, Some(160));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let reads = counting
        .stream_reads
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert!(
        reads < 160,
        "callers waiting together share a refresh ({reads} reads for 160 asks)"
    );
    eprintln!("{reads} reads of the roster for 160 concurrent asks");
}
