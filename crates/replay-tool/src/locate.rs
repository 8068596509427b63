//! Finding where something lives in the log: the post of a media item, the school of a child.
//!
//! A read model may say where to look, but only the log decides: a hint is checked against
//! the stream it names, and without a (correct) hint the whole log is scanned.

use crate::error::ToolError;
use crate::progress;
use crate::replay::{self, Decoded};
use kring_domain::post::PostEvent;
use kring_domain::school::SchoolEvent;
use kring_domain::{ChildId, Event, MediaId, PostId, SchoolId, StreamName};
use kring_projections::models::{memberships, visibility};
use kring_projections::System;
use kring_store::EventStore;

/// Events read per batch when scanning the log.
pub const SCAN_BATCH: usize = 2000;

/// The post `media_id` was published in, with the post's stream decoded; `None` when no post
/// of the log carries it.
///
/// # Errors
/// Store failures; an undecodable event.
pub async fn post_of_media(
    system: &System,
    media_id: MediaId,
) -> Result<Option<(PostId, Vec<Decoded>)>, ToolError> {
    let carries = |events: &[Decoded]| {
        events.iter().any(|d| match &d.event {
            Event::Post(PostEvent::PostPublished(p)) => {
                p.media.iter().any(|m| m.media_id == media_id)
            }
            _ => false,
        })
    };
    if let Ok(Some(place)) = visibility::media_place(&system.db, media_id).await {
        let events = replay::load(&system.store, &StreamName::post(place.post_id)).await?;
        if carries(&events) {
            return Ok(Some((place.post_id, events)));
        }
    }
    let needle = media_id.to_string();
    let found = scan(system, "locating", |r| {
        r.event_type == "PostPublished" && r.payload.contains(&needle)
    })
    .await?;
    for recorded in found {
        let post_id = PostId::from_uuid(recorded.stream.id());
        let events = replay::load(&system.store, &recorded.stream).await?;
        if carries(&events) {
            return Ok(Some((post_id, events)));
        }
    }
    Ok(None)
}

/// The school `child_id` was enrolled in; `None` when no school's roster ever enrolled it.
///
/// # Errors
/// Store failures; an undecodable event.
pub async fn school_of_child(
    system: &System,
    child_id: ChildId,
) -> Result<Option<SchoolId>, ToolError> {
    let enrols = |events: &[Decoded]| {
        events.iter().any(|d| {
            matches!(&d.event, Event::School(SchoolEvent::ChildEnrolled(e)) if e.child_id == child_id)
        })
    };
    if let Ok(Some(view)) = memberships::child(&system.db, child_id).await {
        let events = replay::load(&system.store, &StreamName::school(view.school_id)).await?;
        if enrols(&events) {
            return Ok(Some(view.school_id));
        }
    }
    let needle = child_id.to_string();
    let found = scan(system, "locating", |r| {
        r.event_type == "ChildEnrolled" && r.payload.contains(&needle)
    })
    .await?;
    for recorded in found {
        let events = replay::decode(vec![recorded.clone()])?;
        if enrols(&events) {
            return Ok(Some(SchoolId::from_uuid(recorded.stream.id())));
        }
    }
    Ok(None)
}

/// Every event of the log that `wanted` picks, read in batches with a progress bar.
///
/// # Errors
/// Store failures.
pub async fn scan(
    system: &System,
    what: &str,
    mut wanted: impl FnMut(&kring_store::RecordedEvent) -> bool,
) -> Result<Vec<kring_store::RecordedEvent>, ToolError> {
    let head = system.store.head().await?;
    let bar = progress::events(head, what);
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let batch = system.store.read_all(after, SCAN_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        bar.set_position(after.min(head));
        found.extend(batch.into_iter().filter(|r| wanted(r)));
    }
    bar.finish_and_clear();
    Ok(found)
}
