//! Media visibility ("who may see this photo, and why") and the per-person feed.
//!
//! # How answers are made
//!
//! The rule lives in one place, [`kring_domain::visibility::who_may_see`], and this read model
//! never re-implements it. What the projection keeps is the domain state that rule reads, as
//! event-sourced by the domain's own `evolve` functions:
//!
//! - `visibility_schools`: each school's roster ([`School`], JSON);
//! - `feed_posts`: each post's feed columns (school, group, author, time, liveness and the body
//!   as the sealed envelope's JSON, never plaintext) and, as JSON, the rest of its state ([`Post`]:
//!   its media items with their tags, removed, expired), each fact stored once;
//! - `visibility_consents`: each guardian's latest decision per child and purpose (granted or
//!   withdrawn, and the policy version it answered), one row each — what [`Consents::record`]
//!   keeps for a child, and all that [`Consents::is_effective`] reads. A query folds a child's
//!   rows with the same rule, [`consent::effective`], over the decisions that count under the
//!   roster's current policy.
//!
//! [`Consents::record`]: consent::Consents::record
//! [`Consents::is_effective`]: consent::Consents::is_effective
//!
//! plus two indexes: `media_items` (media item → post, in the order attached, live or not) and
//! `group_audience` (who is in each group's audience: its audience staff and audience guardians,
//! through the domain's `audience_staff` / `audience_guardians`), which picks a person's feed.
//!
//! A query loads the states it needs in one read snapshot and asks the domain rule, so every
//! answer — viewers with their reason, the withheld with the (child, purpose) that withholds
//! them — is by construction what the rule says for the state after the last projected event.
//! Parsed rosters are cached per (generation, checkpoint); with the roster cached, "who may see
//! this item" is one statement (post, checkpoint and the decisions about the children shown).
//!
//! # Why answers are not materialised per (media item, person)
//!
//! A table of viewers per media item grows with media × audience and must be rewritten for every
//! media item showing a child whenever that child's consent changes. In a school year of a
//! 400-pupil school (the rebuild benchmark: 1M events, about 900k media items, each tagging two
//! children, with a class audience of about 50 people) that is ~47M rows written for the posts
//! alone, and each of the ~67k `group_communication` decisions would rewrite the rows of the
//! thousands of items showing that child: the rebuild would be quadratic. Kept as state, every
//! event costs one row write (batched), and a question costs one school roster, one post per
//! asked item and the decisions about the children shown.
//!
//! # Why decisions are rows, not a child's state
//!
//! A child's whole [`Consents`](consent::Consents) as one value would be loaded, parsed,
//! evolved, serialised and written back by every batch with a decision about the child. A
//! decision replaces only its own guardian's earlier one for the purpose, so it is an upsert of
//! its own row, never read back while projecting
//! (`docs/decisions/0010-facts-as-rows-summaries-when-asked.md`).
//!
//! # Batches
//!
//! [`Projection::apply`] only buffers the events this model needs; [`Projection::flush`] loads the
//! touched states in bulk, evolves them in log order and writes each one back once with
//! multi-row `INSERT … ON CONFLICT`. The buffer is kept per generation of tables, because the
//! runtime shares one instance between the serving generation and a rebuilding one.

use crate::bulk::{select_in, select_packed, Bulk, Cell};
use crate::db::{from_micros, micros, Backend, ReadDb, RosterCache};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::child::{ChildEvent, ConsentDecided};
use kring_domain::consent;
use kring_domain::post::{self, MediaItem, Post, PostEvent};
use kring_domain::school::{self, School, SchoolEvent};
use kring_domain::visibility::{self as rule, MediaVisibility};
use kring_domain::{ChildId, Event, GroupId, MediaId, PersonId, PostId, Purpose, SchoolId, Sealed};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;

/// Its name.
pub const NAME: &str = "visibility";

/// The columns of `feed_posts f` that [`post_state`] reads, in its order.
macro_rules! post_columns {
    () => {
        "f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state"
    };
}

const TABLES: &[&str] = &[
    "visibility_schools",
    "visibility_consents",
    "feed_posts",
    "media_items",
    "group_audience",
];

const SCHEMA: &str = "
CREATE TABLE {visibility_schools} (
    school_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE {visibility_consents} (
    child_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    granted BIGINT NOT NULL,
    policy_version BIGINT NOT NULL,
    PRIMARY KEY (child_id, purpose, guardian_id)
){without_rowid};
CREATE TABLE {feed_posts} (
    post_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    body TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    live BIGINT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE {media_items} (
    media_id TEXT PRIMARY KEY,
    post_id TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    live BIGINT NOT NULL
);
CREATE TABLE {group_audience} (
    group_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (group_id, person_id)
);
CREATE INDEX {group_audience}_by_person ON {group_audience} (person_id, group_id)";

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = "
CREATE INDEX {feed_posts}_by_group ON {feed_posts} (group_id, posted_at);
CREATE INDEX {media_items}_by_post ON {media_items} (post_id, ordinal)";

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
        let rows = select_in(
            tx,
            &t.render(
                "SELECT school_id, state FROM {visibility_schools} WHERE school_id IN ({in})",
            ),
            &[],
            &schools,
        )
        .await?;
        for row in rows {
            self.schools.insert(id(&row, 0)?, json(&row, 1)?);
        }
        let posts: Vec<String> = posts.into_iter().collect();
        let rows = select_in(
            tx,
            &t.render(concat!(
                "SELECT ",
                post_columns!(),
                ", f.body FROM {feed_posts} f WHERE f.post_id IN ({in})"
            )),
            &[],
            &posts,
        )
        .await?;
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
            &t.render("INSERT INTO {visibility_schools} (school_id, state)"),
            2,
            " ON CONFLICT (school_id) DO UPDATE SET state = excluded.state",
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
            &t.render(
                "INSERT INTO {visibility_consents} (child_id, purpose, guardian_id, granted, policy_version)",
            ),
            5,
            " ON CONFLICT (child_id, purpose, guardian_id) DO UPDATE SET granted = excluded.granted,
              policy_version = excluded.policy_version",
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
        bulk_insert(
            tx,
            &t.render("INSERT INTO {feed_posts} (post_id, school_id, group_id, author_id, body, posted_at, live, state)"),
            8,
            " ON CONFLICT (post_id) DO UPDATE SET body = excluded.body, live = excluded.live, state = excluded.state",
            rows,
        )
        .await?;
        // The order of attachment is set when an item is first written and kept after.
        bulk_insert(
            tx,
            &t.render("INSERT INTO {media_items} (media_id, post_id, ordinal, live)"),
            4,
            " ON CONFLICT (media_id) DO UPDATE SET live = excluded.live",
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
    let rows = select_packed(
        tx,
        &t.render("SELECT group_id, person_id FROM {group_audience} WHERE group_id IN ({in})"),
        &[],
        &groups,
    )
    .await?;
    let mut stored = BTreeSet::new();
    for row in rows.rows() {
        let row = row?;
        stored.insert((row.try_get::<String>(0)?, row.try_get::<String>(1)?));
    }
    let mut gone: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (group, person) in stored.difference(&wanted) {
        gone.entry(group.as_str()).or_default().push(person.clone());
    }
    let delete =
        t.render("DELETE FROM {group_audience} WHERE group_id = $1 AND person_id IN ({in})");
    for (group, people) in gone {
        select_in(tx, &delete, &[cell(group)], &people).await?;
    }
    let mut rows = Vec::new();
    for (group, person) in wanted.difference(&stored) {
        rows.extend([Cell::Text(group.clone()), Cell::Text(person.clone())]);
    }
    bulk_insert(
        tx,
        &t.render("INSERT INTO {group_audience} (group_id, person_id)"),
        2,
        "",
        rows,
    )
    .await?;
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

const fn school_of(e: &SchoolEvent) -> SchoolId {
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

// ---------------------------------------------------------------------------------------------
// Portable bulk SQL.

fn id<T: FromStr>(row: &AnyRow, i: usize) -> Result<T, ProjectionError>
where
    T::Err: std::fmt::Display,
{
    parsed(&row.try_get::<String, _>(i)?)
}

/// A stored id or name (a purpose) read back.
fn parsed<T: FromStr>(s: &str) -> Result<T, ProjectionError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| {
        ProjectionError::Invalid(format!("bad value {s:?} in the visibility read model: {e}"))
    })
}

/// What a post's state holds beyond its row's columns, stored as `feed_posts.state` (JSON, so
/// that the one-statement who-may-see reads the tagged children with SQL): its media items with
/// their tags, and whether it was removed or expired. Each fact is stored once: repeating the
/// columns in the state would make `feed_posts`, the largest table, far larger.
#[derive(Serialize)]
struct RestRef<'a> {
    media: &'a BTreeMap<MediaId, MediaItem>,
    removed: bool,
    expired: bool,
}

/// [`RestRef`], read back.
#[derive(Deserialize)]
struct Rest {
    media: BTreeMap<MediaId, MediaItem>,
    removed: bool,
    expired: bool,
}

/// A post's state from the [`post_columns!`] at the start of `row`.
fn post_state(row: &AnyRow) -> Result<Post, ProjectionError> {
    let rest: Rest = json(row, 5)?;
    Ok(Post {
        post_id: Some(id(row, 0)?),
        school_id: Some(id(row, 1)?),
        group_id: Some(id(row, 2)?),
        author_id: Some(id(row, 3)?),
        posted_at: Some(from_micros(row.try_get(4)?)?),
        media: rest.media,
        removed: rest.removed,
        expired: rest.expired,
    })
}

fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, i: usize) -> Result<T, ProjectionError> {
    let s: String = row.try_get(i)?;
    Ok(serde_json::from_str(&s)?)
}

// ---------------------------------------------------------------------------------------------
// Queries.

/// One post of a person's feed, with only the media items that person may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedPost {
    /// The post.
    pub post_id: PostId,
    /// Its audience.
    pub group_id: GroupId,
    /// Who posted it.
    pub author_id: PersonId,
    /// When.
    pub posted_at: DateTime<Utc>,
    /// The text, sealed: open it with the key vault (an erased or removed post reads as erased).
    pub body: Sealed<String>,
    /// The media items the person may see, in the order attached.
    pub media: Vec<MediaId>,
}

/// A read transaction: every statement of one answer sees the same committed state, so a
/// projector commit between two of them cannot mix a roster with a post it did not see.
async fn snapshot(db: &ReadDb) -> Result<sqlx::Transaction<'static, Any>, ProjectionError> {
    let mut tx = db.pool().begin().await?;
    if db.backend() == Backend::Postgres {
        (&mut *tx)
            .execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
    }
    Ok(tx)
}

/// The states the rule needs for some posts: their schools' rosters and the decisions about the
/// children shown in their media items.
struct Rules {
    schools: HashMap<SchoolId, Arc<School>>,
    decisions: Decisions,
    nowhere: School,
}

/// Each guardian's latest decision (granted or not, and the policy version it answered) per
/// child and purpose: the rows of `visibility_consents`.
#[derive(Default)]
struct Decisions(HashMap<(ChildId, Purpose), Vec<(bool, u32)>>);

impl Decisions {
    fn add(
        &mut self,
        child: &str,
        purpose: &str,
        granted: i64,
        version: i64,
    ) -> Result<(), ProjectionError> {
        let version = u32::try_from(version).map_err(|_| {
            ProjectionError::Invalid(format!(
                "policy version {version} in the visibility read model"
            ))
        })?;
        self.0
            .entry((parsed(child)?, parsed(purpose)?))
            .or_default()
            .push((granted != 0, version));
        Ok(())
    }

    /// Whether consent for (`child`, `purpose`) holds over the decisions made under version
    /// `counting_from` or later: the domain's rule, as
    /// [`Consents::is_effective`](consent::Consents::is_effective) applies it.
    fn is_effective(&self, child: ChildId, purpose: Purpose, counting_from: u32) -> bool {
        self.0.get(&(child, purpose)).is_some_and(|decided| {
            consent::effective(
                decided
                    .iter()
                    .filter(|(_, version)| *version >= counting_from)
                    .map(|(granted, _)| *granted),
            )
        })
    }
}

impl Rules {
    async fn load<'p>(
        conn: &mut AnyConnection,
        cache: &RosterCache,
        posts: impl Iterator<Item = &'p Post> + Clone,
    ) -> Result<Self, ProjectionError> {
        let schools: BTreeSet<String> = posts
            .clone()
            .filter_map(|p| p.school_id)
            .map(|s| s.to_string())
            .collect();
        let children: BTreeSet<String> = posts
            .flat_map(|p| p.media.values())
            .flat_map(|m| m.tagged.iter())
            .map(ToString::to_string)
            .collect();
        let mut rules = Self {
            schools: HashMap::new(),
            decisions: Decisions::default(),
            nowhere: School::default(),
        };
        // Where the read model stands in this snapshot: rosters parsed at the same point are
        // still right.
        let at: Option<(i64, i64)> = sqlx::query_as(
            "SELECT generation, position FROM projection_generations WHERE name = $1 AND active = 1",
        )
        .bind(NAME)
        .fetch_optional(&mut *conn)
        .await?;
        let mut missing = Vec::new();
        for school in schools {
            let cached = at.and_then(|at| cache.get(school.parse().ok()?, at));
            match cached {
                Some(roster) => {
                    rules.schools.insert(parsed(&school)?, roster);
                }
                None => missing.push(school),
            }
        }
        for row in select_in(
            conn,
            "SELECT school_id, state FROM visibility_schools WHERE school_id IN ({in})",
            &[],
            &missing,
        )
        .await?
        {
            let school: SchoolId = id(&row, 0)?;
            let roster: Arc<School> = Arc::new(json(&row, 1)?);
            if let Some(at) = at {
                cache.put(school, at, Arc::clone(&roster));
            }
            rules.schools.insert(school, roster);
        }
        let children: Vec<String> = children.into_iter().collect();
        for row in select_in(
            conn,
            "SELECT child_id, purpose, granted, policy_version FROM visibility_consents WHERE child_id IN ({in})",
            &[],
            &children,
        )
        .await?
        {
            let (child, purpose): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            rules
                .decisions
                .add(&child, &purpose, row.try_get(2)?, row.try_get(3)?)?;
        }
        Ok(rules)
    }

    /// The domain's answer for `media_id` of `post`.
    fn answer(&self, post: &Post, media_id: MediaId) -> Result<MediaVisibility, ProjectionError> {
        let school = post
            .school_id
            .and_then(|s| self.schools.get(&s))
            .map_or(&self.nowhere, |s| &**s);
        let consent = |child: ChildId, purpose, counting_from| {
            self.decisions.is_effective(child, purpose, counting_from)
        };
        rule::who_may_see(school, post, media_id, &consent)
            .map_err(|e| ProjectionError::Invalid(format!("media item {media_id}: {e}")))
    }
}

/// Who may see `media_id` and why, and who is withheld because of which child and purpose: the
/// domain's [`rule::who_may_see`] on the projected state. A removed or expired item has neither
/// viewers nor withheld. `None` for a media id never published.
///
/// # Errors
/// Database failures; a stored state this build cannot read.
pub async fn who_may_see(
    db: &ReadDb,
    media_id: MediaId,
) -> Result<Option<MediaVisibility>, ProjectionError> {
    if let Some(answer) = who_may_see_at_once(db, media_id).await? {
        return Ok(answer);
    }
    let mut tx = snapshot(db).await?;
    let row = sqlx::query(concat!(
        "SELECT ",
        post_columns!(),
        " FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id WHERE m.media_id = $1"
    ))
    .bind(media_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let post = post_state(&row)?;
    let rules = Rules::load(&mut tx, db.rosters(), std::iter::once(&post)).await?;
    let answer = rules.answer(&post, media_id)?;
    tx.rollback().await?;
    Ok(Some(answer))
}

/// [`who_may_see`] in one statement: the post's state, where the read model stands, and the
/// decisions about every child its media show, read together (one statement reads one snapshot).
/// The school's roster comes from the parsed-roster cache; when it is not there for this
/// snapshot, `None`, and [`who_may_see`] goes the long way (a read transaction, four queries).
///
/// Each statement is a round trip (on SQLite a hand-off to the connection's thread and back),
/// and this is the API's most frequent read: one statement instead of five.
async fn who_may_see_at_once(
    db: &ReadDb,
    media_id: MediaId,
) -> Result<Option<Option<MediaVisibility>>, ProjectionError> {
    let sql = match db.backend() {
        Backend::Sqlite => WHO_MAY_SEE_SQLITE,
        Backend::Postgres => WHO_MAY_SEE_POSTGRES,
    };
    let row = sqlx::query(sql)
        .bind(media_id.to_string())
        .bind(NAME)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else {
        return Ok(Some(None));
    };
    let post = post_state(&row)?;
    let generation: Option<i64> = row.try_get(6)?;
    let position: Option<i64> = row.try_get(7)?;
    let (Some(generation), Some(position)) = (generation, position) else {
        return Ok(None);
    };
    let mut schools = HashMap::new();
    if let Some(school) = post.school_id {
        match db.rosters().get(school, (generation, position)) {
            Some(roster) => {
                schools.insert(school, roster);
            }
            None => return Ok(None),
        }
    }
    let mut decisions = Decisions::default();
    for (child, purpose, granted, version) in json::<Vec<(String, String, i64, i64)>>(&row, 8)? {
        decisions.add(&child, &purpose, granted, version)?;
    }
    let rules = Rules {
        schools,
        decisions,
        nowhere: School::default(),
    };
    Ok(Some(Some(rules.answer(&post, media_id)?)))
}

/// See [`who_may_see_at_once`]: `$1` the media item, `$2` this projection's name.
const WHO_MAY_SEE_SQLITE: &str = concat!(
    "SELECT ",
    post_columns!(),
    ", g.generation, g.position,
    (SELECT json_group_array(json_array(c.child_id, c.purpose, c.granted, c.policy_version))
     FROM visibility_consents c
     WHERE c.child_id IN (SELECT t.value FROM json_each(f.state, '$.media') AS item,
                                              json_each(item.value, '$.tagged') AS t))
FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id
LEFT JOIN projection_generations g ON g.name = $2 AND g.active = 1
WHERE m.media_id = $1"
);

/// [`WHO_MAY_SEE_SQLITE`] in PostgreSQL's JSON dialect. `= ANY(ARRAY(…))`, not `IN (…)`: the
/// planner guesses 10,000 tagged children from the JSON functions and answers `IN` with a
/// scan of every decision instead of going through the key
/// (`docs/decisions/0010-facts-as-rows-summaries-when-asked.md`).
const WHO_MAY_SEE_POSTGRES: &str = concat!(
    "SELECT ",
    post_columns!(),
    ", g.generation, g.position,
    (SELECT COALESCE(json_agg(json_build_array(c.child_id, c.purpose, c.granted, c.policy_version)), '[]'::json)::text
     FROM visibility_consents c
     WHERE c.child_id = ANY(ARRAY(SELECT jsonb_array_elements_text(item.value -> 'tagged')
                                  FROM jsonb_each(f.state::jsonb -> 'media') AS item)))
FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id
LEFT JOIN projection_generations g ON g.name = $2 AND g.active = 1
WHERE m.media_id = $1"
);

/// Whether `person` may see `media_id` now (`false` for an unknown item).
///
/// # Errors
/// As [`who_may_see`].
pub async fn may_see(
    db: &ReadDb,
    person: PersonId,
    media_id: MediaId,
) -> Result<bool, ProjectionError> {
    Ok(who_may_see(db, media_id)
        .await?
        .is_some_and(|v| v.may_see(person)))
}

/// The posts whose audience includes `person`, newest first: at most `limit`, optionally only
/// of `group`, and only older than `before` (to page: pass the last post's `posted_at`). Each
/// lists only the media items the person may see; a removed or expired post is not listed.
///
/// # Errors
/// As [`who_may_see`].
pub async fn feed(
    db: &ReadDb,
    person: PersonId,
    group: Option<GroupId>,
    limit: u32,
    before: Option<DateTime<Utc>>,
) -> Result<Vec<FeedPost>, ProjectionError> {
    let cursor = before.map(|t| (micros(t), String::new()));
    feed_rows(db, person, group, limit, cursor).await
}

/// Like [`feed`], paged exactly: only posts after `after` in the feed's order (newest first,
/// then by post id), so posts published in the same microsecond are neither skipped nor repeated
/// across pages. Pass the last post of a page as `after` to get the next one.
///
/// # Errors
/// As [`who_may_see`].
pub async fn feed_after(
    db: &ReadDb,
    person: PersonId,
    group: Option<GroupId>,
    limit: u32,
    after: Option<(DateTime<Utc>, PostId)>,
) -> Result<Vec<FeedPost>, ProjectionError> {
    let cursor = after.map(|(t, p)| (micros(t), p.to_string()));
    feed_rows(db, person, group, limit, cursor).await
}

/// The feed's query; `cursor` is (posted_at, post id) of the last post already seen (an empty
/// post id: every post of that microsecond counts as seen).
async fn feed_rows(
    db: &ReadDb,
    person: PersonId,
    group: Option<GroupId>,
    limit: u32,
    cursor: Option<(i64, String)>,
) -> Result<Vec<FeedPost>, ProjectionError> {
    let mut tx = snapshot(db).await?;
    let (before, before_id) = cursor.unwrap_or((i64::MAX, String::new()));
    let rows = sqlx::query(concat!(
        "SELECT ",
        post_columns!(),
        ", f.body
         FROM feed_posts f JOIN group_audience a ON a.group_id = f.group_id
         WHERE a.person_id = $1 AND f.live = 1 AND ($2 = '' OR f.group_id = $2)
           AND (f.posted_at < $3 OR (f.posted_at = $3 AND f.post_id < $4))
         ORDER BY f.posted_at DESC, f.post_id DESC
         LIMIT $5"
    ))
    .bind(person.to_string())
    .bind(group.map(|g| g.to_string()).unwrap_or_default())
    .bind(before)
    .bind(before_id)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let posts = with_media(&mut tx, db.rosters(), &rows, Some(person)).await?;
    tx.rollback().await?;
    Ok(posts)
}

/// Rows of [`post_columns!`] and `body` as feed posts, each with the media items `reader` may
/// see (`None`: every live item), in the order attached.
async fn with_media(
    tx: &mut AnyConnection,
    cache: &RosterCache,
    rows: &[AnyRow],
    reader: Option<PersonId>,
) -> Result<Vec<FeedPost>, ProjectionError> {
    let mut posts = Vec::with_capacity(rows.len());
    for row in rows {
        let body: String = row.try_get(6)?;
        let post = FeedPost {
            post_id: id(row, 0)?,
            group_id: id(row, 2)?,
            author_id: id(row, 3)?,
            posted_at: from_micros(row.try_get(4)?)?,
            body: serde_json::from_str(&body)?,
            media: Vec::new(),
        };
        posts.push((post, post_state(row)?));
    }
    let ids: Vec<String> = posts.iter().map(|(p, _)| p.post_id.to_string()).collect();
    let mut order: HashMap<PostId, Vec<MediaId>> = HashMap::new();
    for row in select_in(tx, "SELECT post_id, media_id FROM media_items WHERE post_id IN ({in}) ORDER BY ordinal, media_id", &[], &ids).await? {
        order.entry(id(&row, 0)?).or_default().push(id(&row, 1)?);
    }
    let rules = Rules::load(tx, cache, posts.iter().map(|(_, s)| s)).await?;
    let mut out = Vec::with_capacity(posts.len());
    for (mut post, state) in posts {
        for media_id in order.remove(&post.post_id).unwrap_or_default() {
            let shown = match reader {
                Some(person) => rules.answer(&state, media_id)?.may_see(person),
                None => state.media_is_live(media_id),
            };
            if shown {
                post.media.push(media_id);
            }
        }
        out.push(post);
    }
    Ok(out)
}

/// One live post as `reader` sees it: `None` unless the post exists, is live (not removed or
/// expired) and `reader` is in its audience; with only the media items `reader` may see. With
/// `reader` `None` (a privileged read, e.g. a compliance officer's), the live post with every
/// live media item.
///
/// # Errors
/// As [`who_may_see`].
pub async fn post(
    db: &ReadDb,
    post_id: PostId,
    reader: Option<PersonId>,
) -> Result<Option<FeedPost>, ProjectionError> {
    let mut tx = snapshot(db).await?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        post_columns!(),
        ", f.body
         FROM feed_posts f
         WHERE f.post_id = $1 AND f.live = 1
           AND ($2 = '' OR EXISTS (SELECT 1 FROM group_audience a
                                   WHERE a.group_id = f.group_id AND a.person_id = $2))"
    ))
    .bind(post_id.to_string())
    .bind(reader.map(|p| p.to_string()).unwrap_or_default())
    .fetch_all(&mut *tx)
    .await?;
    let mut posts = with_media(&mut tx, db.rosters(), &rows, reader).await?;
    tx.rollback().await?;
    Ok(posts.pop())
}

/// Where a media item was published: its post, the post's audience and school.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MediaPlace {
    /// The media item.
    pub media_id: MediaId,
    /// Its post.
    pub post_id: PostId,
    /// The post's audience.
    pub group_id: GroupId,
    /// The post's school.
    pub school_id: SchoolId,
    /// Whether anyone can still see it (neither it nor its post removed or expired).
    pub live: bool,
}

/// The post a media item was published in (removed or not); `None` for an item never
/// published (an upload not yet attached, or an unknown id).
///
/// # Errors
/// Database failures; a stored id this build cannot read.
pub async fn media_place(
    db: &ReadDb,
    media_id: MediaId,
) -> Result<Option<MediaPlace>, ProjectionError> {
    let row = sqlx::query(
        "SELECT m.post_id, f.group_id, f.school_id, m.live
         FROM media_items m JOIN feed_posts f ON f.post_id = m.post_id WHERE m.media_id = $1",
    )
    .bind(media_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        Ok(MediaPlace {
            media_id,
            post_id: id(&row, 0)?,
            group_id: id(&row, 1)?,
            school_id: id(&row, 2)?,
            live: row.try_get::<i64, _>(3)? != 0,
        })
    })
    .transpose()
}

/// The live media items of `school` that show `child`, with their posts: what the child's
/// erasure removes. The child's id in a post's stored state picks the candidates; each is then
/// read as a post state and kept only if a live item of it tags the child.
///
/// # Errors
/// Database failures; a stored state this build cannot read.
pub async fn live_media_showing(
    db: &ReadDb,
    school: SchoolId,
    child: ChildId,
) -> Result<Vec<(PostId, MediaId)>, ProjectionError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        post_columns!(),
        " FROM feed_posts f WHERE f.school_id = $1 AND f.live = 1 AND f.state LIKE $2"
    ))
    .bind(school.to_string())
    .bind(format!("%{child}%"))
    .fetch_all(db.pool())
    .await?;
    let mut found = Vec::new();
    for row in &rows {
        let post = post_state(row)?;
        let Some(post_id) = post.post_id else {
            continue;
        };
        for (media_id, item) in &post.media {
            if item.tagged.contains(&child) && post.media_is_live(*media_id) {
                found.push((post_id, *media_id));
            }
        }
    }
    Ok(found)
}

/// Live posts whose school's retention period ([`school::SchoolSettings::retention_days`]) has
/// run out by `now` — posted at or before `now` minus that many days — oldest first, at most
/// `limit`: what the retention job expires. Per group through the feed's (group, time) index.
///
/// # Errors
/// Database failures; a stored state this build cannot read.
pub async fn due_for_expiry(
    db: &ReadDb,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<PostId>, ProjectionError> {
    let mut conn = snapshot(db).await?;
    let schools = sqlx::query("SELECT state FROM visibility_schools")
        .fetch_all(&mut *conn)
        .await?;
    let mut due: Vec<(i64, PostId)> = Vec::new();
    for row in schools {
        let school: School = json(&row, 0)?;
        let cutoff = now - chrono::Duration::days(i64::from(school.settings.retention_days));
        for group_id in school.groups.keys() {
            let rows = sqlx::query(
                "SELECT posted_at, post_id FROM feed_posts
                 WHERE group_id = $1 AND live = 1 AND posted_at <= $2
                 ORDER BY posted_at LIMIT $3",
            )
            .bind(group_id.to_string())
            .bind(micros(cutoff))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                due.push((row.try_get(0)?, id(&row, 1)?));
            }
        }
    }
    conn.rollback().await?;
    due.sort_unstable();
    due.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(due.into_iter().map(|(_, post)| post).collect())
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
