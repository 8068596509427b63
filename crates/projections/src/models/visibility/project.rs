//! The write side: applying events to the visibility read model.

use super::{id, json, post_state, RestRef, NAME};
use crate::bulk::{select_in, select_packed, Bulk, Cell};
use crate::db::micros;
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use kring_domain::child::{ChildEvent, ConsentDecided};
use kring_domain::post::{self, Post, PostEvent};
use kring_domain::school::{self, School, SchoolEvent};
use kring_domain::{ChildId, Event, MediaId, PersonId, PostId, Purpose, SchoolId};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const LOAD_SCHOOLS: &str = include_str!("sql/load_schools.sql");
const LOAD_POSTS: &str = include_str!("sql/load_posts.sql");
const UPSERT_SCHOOLS: &str = include_str!("sql/upsert_schools.sql");
const UPSERT_SCHOOLS_SUFFIX: &str = include_str!("sql/upsert_schools_suffix.sql");
const UPSERT_CONSENTS: &str = include_str!("sql/upsert_consents.sql");
const UPSERT_CONSENTS_SUFFIX: &str = include_str!("sql/upsert_consents_suffix.sql");
const UPSERT_POSTS: &str = include_str!("sql/upsert_posts.sql");
const UPSERT_POSTS_SUFFIX: &str = include_str!("sql/upsert_posts_suffix.sql");
const UPSERT_MEDIA_ITEMS: &str = include_str!("sql/upsert_media_items.sql");
const UPSERT_MEDIA_ITEMS_SUFFIX: &str = include_str!("sql/upsert_media_items_suffix.sql");
const LOAD_AUDIENCE: &str = include_str!("sql/load_audience.sql");
const DELETE_AUDIENCE: &str = include_str!("sql/delete_audience.sql");
const INSERT_AUDIENCE: &str = include_str!("sql/insert_audience.sql");

const TABLES: &[&str] = &[
    "visibility_schools",
    "visibility_consents",
    "feed_posts",
    "media_items",
    "group_audience",
];

const SCHEMA: &str = include_str!("sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

/// The projection: media visibility and the feed.
#[derive(Debug, Default)]
pub struct VisibilityProjection {
    /// The events of the batch being applied that this model needs.
    buffer: Buffer<Needed>,
}

#[derive(Debug)]
enum Needed {
    School(SchoolEvent),
    Post(PostEvent),
    /// Only `ConsentDecided`: the rest of a child's stream does not bear on visibility.
    Consent(ConsentDecided),
}

#[async_trait]
impl Projection for VisibilityProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        _tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let needed = match e.event {
            Event::School(s) => Some(Needed::School(s.clone())),
            Event::Post(p) => Some(Needed::Post(p.clone())),
            Event::Child(ChildEvent::ConsentDecided(d)) => Some(Needed::Consent(d.clone())),
            _ => None,
        };
        self.buffer.push(t, e.recorded.position, needed);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let events = self.buffer.take(t);
        if events.is_empty() {
            return Ok(());
        }
        let mut work = Work::default();
        work.load(tx, t, &events).await?;
        work.evolve(events)?;
        work.write(tx, t).await
    }

    /// Nothing outlives a batch here ([`Buffer`] forgets a rolled-back batch by its positions).
    fn reset(&self) {}
}

/// The states one flush works on, loaded in bulk, evolved in log order, written back once.
#[derive(Default)]
struct Work {
    schools: HashMap<SchoolId, School>,
    posts: HashMap<PostId, StoredPost>,
    /// Each guardian's latest decision per child and purpose decided in the batch.
    decisions: BTreeMap<(ChildId, Purpose, PersonId), (bool, u32)>,
    /// Schools whose roster changed in a way that can change a group's audience.
    audience_changed: BTreeSet<SchoolId>,
    touched_schools: BTreeSet<SchoolId>,
    touched_posts: BTreeSet<PostId>,
    /// Posts whose media items were attached or may have stopped being live.
    media_changed: BTreeSet<PostId>,
    /// Order of attachment of media items published in this batch.
    ordinals: HashMap<MediaId, i64>,
}

#[derive(Default)]
struct StoredPost {
    state: Post,
    /// The body's sealed envelope as JSON text.
    body: String,
}

impl Work {
    async fn load(
        &mut self,
        tx: &mut Tx,
        t: &Tables,
        events: &[Needed],
    ) -> Result<(), ProjectionError> {
        let mut schools = BTreeSet::new();
        let mut posts = BTreeSet::new();
        // A post's stream starts with its publication: one published in this batch has nothing
        // stored yet, so it is not loaded (in a rebuild, that is most posts a batch touches).
        let mut published = BTreeSet::new();
        for e in events {
            match e {
                Needed::School(e) => {
                    schools.insert(school_of(e).to_string());
                }
                Needed::Post(PostEvent::PostPublished(p)) => {
                    published.insert(p.post_id);
                }
                Needed::Post(e) => {
                    let post_id = post_of(e);
                    if !published.contains(&post_id) {
                        posts.insert(post_id.to_string());
                    }
                }
                // A decision replaces its guardian's earlier one: nothing to load.
                Needed::Consent(_) => {}
            }
        }
        // Few rows with large values (rosters, post states): plain loads, where packing
        // (`select_packed`) would only copy the values once more.
        let schools: Vec<String> = schools.into_iter().collect();
        let rows = select_in(tx, &t.render(LOAD_SCHOOLS), &[], &schools).await?;
        for row in rows {
            self.schools.insert(id(&row, 0)?, json(&row, 1)?);
        }
        let posts: Vec<String> = posts.into_iter().collect();
        let rows = select_in(tx, &t.render(LOAD_POSTS), &[], &posts).await?;
        for row in rows {
            self.posts.insert(
                id(&row, 0)?,
                StoredPost {
                    state: post_state(&row)?,
                    body: row.try_get(6)?,
                },
            );
        }
        Ok(())
    }

    /// Applies the batch's events in log order with the domain's `evolve` functions.
    fn evolve(&mut self, events: Vec<Needed>) -> Result<(), ProjectionError> {
        for e in events {
            match e {
                Needed::School(e) => {
                    let school_id = school_of(&e);
                    let state = self.schools.remove(&school_id).unwrap_or_default();
                    self.schools.insert(school_id, school::evolve(state, &e));
                    self.touched_schools.insert(school_id);
                    if changes_audience(&e) {
                        self.audience_changed.insert(school_id);
                    }
                }
                Needed::Post(e) => {
                    let post_id = post_of(&e);
                    let stored = self.posts.entry(post_id).or_default();
                    match &e {
                        PostEvent::PostPublished(p) => {
                            stored.body = serde_json::to_string(&p.body)?;
                            for (i, m) in p.media.iter().enumerate() {
                                self.ordinals
                                    .insert(m.media_id, i64::try_from(i).unwrap_or(i64::MAX));
                            }
                            self.media_changed.insert(post_id);
                        }
                        PostEvent::PostEdited(p) => stored.body = serde_json::to_string(&p.body)?,
                        PostEvent::MediaRemoved(_)
                        | PostEvent::PostRemoved(_)
                        | PostEvent::PostExpired(_) => {
                            self.media_changed.insert(post_id);
                        }
                        PostEvent::ChildTagged(_) | PostEvent::ChildUntagged(_) => {}
                    }
                    stored.state = post::evolve(std::mem::take(&mut stored.state), &e);
                    self.touched_posts.insert(post_id);
                }
                // As `child::evolve` records it: the guardian's decision for the purpose
                // replaces their earlier one. The child's other facts (absences, erasure) do
                // not bear on visibility.
                Needed::Consent(d) => {
                    self.decisions.insert(
                        (d.child_id, d.purpose, d.guardian_id),
                        (d.granted, d.policy_version),
                    );
                }
            }
        }
        Ok(())
    }

    async fn write(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let mut rows = Vec::new();
        for school_id in &self.touched_schools {
            if let Some(state) = self.schools.get(school_id) {
                rows.extend([cell(school_id), Cell::Text(serde_json::to_string(state)?)]);
            }
        }
        bulk_insert(
            tx,
            &t.render(UPSERT_SCHOOLS),
            2,
            UPSERT_SCHOOLS_SUFFIX,
            rows,
        )
        .await?;

        let mut rows = Vec::with_capacity(self.decisions.len() * 5);
        for ((child_id, purpose, guardian_id), (granted, version)) in &self.decisions {
            rows.extend([
                cell(child_id),
                Cell::from(purpose.as_str()),
                cell(guardian_id),
                Cell::from(*granted),
                Cell::Int(i64::from(*version)),
            ]);
        }
        bulk_insert(
            tx,
            &t.render(UPSERT_CONSENTS),
            5,
            UPSERT_CONSENTS_SUFFIX,
            rows,
        )
        .await?;

        let mut rows = Vec::new();
        let mut media = Vec::new();
        for post_id in &self.touched_posts {
            let Some(stored) = self.posts.get(post_id) else {
                continue;
            };
            let post = &stored.state;
            // Events about a post that was never published change nothing anyone can see.
            let (Some(school_id), Some(group_id), Some(author_id), Some(at)) = (
                post.school_id,
                post.group_id,
                post.author_id,
                post.posted_at,
            ) else {
                continue;
            };
            rows.extend([
                cell(post_id),
                cell(school_id),
                cell(group_id),
                cell(author_id),
                Cell::Text(stored.body.clone()),
                Cell::Int(micros(at)),
                Cell::Int(i64::from(!post.removed && !post.expired)),
                Cell::Text(serde_json::to_string(&RestRef {
                    media: &post.media,
                    removed: post.removed,
                    expired: post.expired,
                })?),
            ]);
            if self.media_changed.contains(post_id) {
                for media_id in post.media.keys() {
                    media.extend([
                        cell(media_id),
                        cell(post_id),
                        Cell::Int(self.ordinals.get(media_id).copied().unwrap_or_default()),
                        Cell::Int(i64::from(post.media_is_live(*media_id))),
                    ]);
                }
            }
        }
        bulk_insert(tx, &t.render(UPSERT_POSTS), 8, UPSERT_POSTS_SUFFIX, rows).await?;
        // The order of attachment is set when an item is first written and kept after.
        bulk_insert(
            tx,
            &t.render(UPSERT_MEDIA_ITEMS),
            4,
            UPSERT_MEDIA_ITEMS_SUFFIX,
            media,
        )
        .await?;

        for school_id in &self.audience_changed {
            if let Some(school) = self.schools.get(school_id) {
                write_audience(tx, t, school).await?;
            }
        }
        Ok(())
    }
}

/// Brings a school's rows of `group_audience` in line with its roster: the audience of each
/// group is the domain's `audience_staff` plus the keys of `audience_guardians`. Only the
/// difference with what is stored is written, so a roster change costs a read of the school's
/// audience rows and a few writes.
async fn write_audience(tx: &mut Tx, t: &Tables, school: &School) -> Result<(), ProjectionError> {
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    for group_id in school.groups.keys() {
        let staff = school.audience_staff(*group_id);
        let guardians = school.audience_guardians(*group_id);
        for person in staff.iter().chain(guardians.keys()) {
            wanted.insert((group_id.to_string(), person.to_string()));
        }
    }
    let groups: Vec<String> = school.groups.keys().map(ToString::to_string).collect();
    let rows = select_packed(tx, &t.render(LOAD_AUDIENCE), &[], &groups).await?;
    let mut stored = BTreeSet::new();
    for row in rows.rows() {
        let row = row?;
        stored.insert((row.try_get::<String>(0)?, row.try_get::<String>(1)?));
    }
    let mut gone: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (group, person) in stored.difference(&wanted) {
        gone.entry(group.as_str()).or_default().push(person.clone());
    }
    let delete = t.render(DELETE_AUDIENCE);
    for (group, people) in gone {
        select_in(tx, &delete, &[cell(group)], &people).await?;
    }
    let mut rows = Vec::new();
    for (group, person) in wanted.difference(&stored) {
        rows.extend([Cell::Text(group.clone()), Cell::Text(person.clone())]);
    }
    bulk_insert(tx, &t.render(INSERT_AUDIENCE), 2, "", rows).await?;
    Ok(())
}

/// Whether a roster event can change who is in some group's audience. Exhaustive on purpose: a
/// new roster event must be decided on here.
const fn changes_audience(e: &SchoolEvent) -> bool {
    match e {
        SchoolEvent::SchoolRegistered(_)
        | SchoolEvent::StaffJoined(_)
        | SchoolEvent::StaffRoleChanged(_)
        | SchoolEvent::StaffLeft(_)
        | SchoolEvent::GroupCreated(_)
        | SchoolEvent::StaffAssigned(_)
        | SchoolEvent::StaffUnassigned(_)
        | SchoolEvent::ChildEnrolled(_)
        | SchoolEvent::ChildMoved(_)
        | SchoolEvent::ChildUnenrolled(_)
        | SchoolEvent::GuardianLinked(_)
        | SchoolEvent::GuardianUnlinked(_) => true,
        SchoolEvent::SchoolSettingsChanged(_)
        | SchoolEvent::ConsentPolicyPublished(_)
        | SchoolEvent::GroupArchived(_)
        | SchoolEvent::ChildDetailsCorrected(_) => false,
    }
}

/// The school a roster event is about.
pub(crate) const fn school_of(e: &SchoolEvent) -> SchoolId {
    match e {
        SchoolEvent::SchoolRegistered(e) => e.school_id,
        SchoolEvent::SchoolSettingsChanged(e) => e.school_id,
        SchoolEvent::ConsentPolicyPublished(e) => e.school_id,
        SchoolEvent::StaffJoined(e) => e.school_id,
        SchoolEvent::StaffRoleChanged(e) => e.school_id,
        SchoolEvent::StaffLeft(e) => e.school_id,
        SchoolEvent::GroupCreated(e) => e.school_id,
        SchoolEvent::GroupArchived(e) => e.school_id,
        SchoolEvent::StaffAssigned(e) => e.school_id,
        SchoolEvent::StaffUnassigned(e) => e.school_id,
        SchoolEvent::ChildEnrolled(e) => e.school_id,
        SchoolEvent::ChildDetailsCorrected(e) => e.school_id,
        SchoolEvent::ChildMoved(e) => e.school_id,
        SchoolEvent::ChildUnenrolled(e) => e.school_id,
        SchoolEvent::GuardianLinked(e) => e.school_id,
        SchoolEvent::GuardianUnlinked(e) => e.school_id,
    }
}

const fn post_of(e: &PostEvent) -> PostId {
    match e {
        PostEvent::PostPublished(e) => e.post_id,
        PostEvent::PostEdited(e) => e.post_id,
        PostEvent::ChildTagged(e) => e.post_id,
        PostEvent::ChildUntagged(e) => e.post_id,
        PostEvent::MediaRemoved(e) => e.post_id,
        PostEvent::PostRemoved(e) => e.post_id,
        PostEvent::PostExpired(e) => e.post_id,
    }
}

fn cell(v: impl ToString) -> Cell {
    Cell::Text(v.to_string())
}

/// `head` + rows of `width` cells (flat) + `suffix`, in as few statements as [`Bulk`] needs.
async fn bulk_insert(
    tx: &mut Tx,
    head: &str,
    width: usize,
    suffix: &'static str,
    cells: Vec<Cell>,
) -> Result<(), ProjectionError> {
    let mut bulk = Bulk::new(head.to_owned(), width, suffix);
    bulk.rows(cells);
    bulk.execute(tx).await
}
