//! The command executor's cached states: two executors on one store (two API instances) each
//! see what the other wrote, and decide on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kring_api::exec::{ChildAgg, Executor};
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
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(
        SqliteStore::open(dir.path().join("events.db"))
            .await
            .unwrap(),
    );
    let vault = Arc::new(
        KeyVault::open_sqlite(&dir.path().join("events.db"), &MasterKey::generate())
            .await
            .unwrap(),
    );
    let a = Executor::new(store.clone(), Arc::clone(&vault));
    let b = Executor::new(store.clone(), Arc::clone(&vault));
    let child = ChildId::generate();
    let stream = StreamName::child(child);
    let (mum, dad) = (PersonId::generate(), PersonId::generate());
    let actor = Actor::System;
    let id = uuid::Uuid::now_v7();

    a.run::<ChildAgg, _>(stream, actor, id, |_, _| {
        Ok(vec![decided(child, mum, true)])
    })
    .await
    .unwrap();
    // A caches the state it wrote; B has never seen the stream and reads it.
    let seen_by_b = b.load::<ChildAgg>(&stream).await.unwrap();
    assert_eq!(seen_by_b.version, Some(0));
    assert_eq!(latest(&seen_by_b.state, mum), Some(true));
    b.run::<ChildAgg, _>(stream, actor, id, |_, _| {
        Ok(vec![decided(child, dad, false)])
    })
    .await
    .unwrap();
    // A's cache is behind: it reads only the tail, and sees B's decision.
    let seen_by_a = a.load::<ChildAgg>(&stream).await.unwrap();
    assert_eq!(seen_by_a.version, Some(1));
    assert_eq!(latest(&seen_by_a.state, mum), Some(true));
    assert_eq!(latest(&seen_by_a.state, dad), Some(false));
    // A's next command decides on that refreshed state.
    a.run::<ChildAgg, _>(stream, actor, id, |state, _| {
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
