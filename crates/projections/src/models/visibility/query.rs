//! The read side: who may see a media item, and the feed.

use super::{id, json, parsed, post_state, NAME};
use crate::bulk::select_in;
use crate::db::{from_micros, micros, Backend, ReadDb, RosterCache};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::consent;
use kring_domain::post::Post;
use kring_domain::school::School;
use kring_domain::visibility::{self as rule, MediaVisibility};
use kring_domain::{ChildId, GroupId, MediaId, PersonId, PostId, Purpose, SchoolId, Sealed};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

const READ_ONLY_SNAPSHOT: &str = include_str!("sql/postgres/read_only_snapshot.sql");
const ACTIVE_GENERATION: &str = include_str!("sql/active_generation.sql");
const ROSTERS: &str = include_str!("sql/rosters.sql");
const DECISIONS: &str = include_str!("sql/decisions.sql");
const POST_OF_MEDIA: &str = include_str!("sql/post_of_media.sql");
const FEED: &str = include_str!("sql/feed.sql");
const MEDIA_OF_POSTS: &str = include_str!("sql/media_of_posts.sql");
const POST: &str = include_str!("sql/post.sql");
const GROUP_POSTS: &str = include_str!("sql/group_posts.sql");
const MEDIA_PLACE: &str = include_str!("sql/media_place.sql");
const LIVE_MEDIA_SHOWING: &str = include_str!("sql/live_media_showing.sql");
const ALL_ROSTERS: &str = include_str!("sql/all_rosters.sql");
const DUE_FOR_EXPIRY: &str = include_str!("sql/due_for_expiry.sql");

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
        (&mut *tx).execute(READ_ONLY_SNAPSHOT).await?;
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
        let at: Option<(i64, i64)> = sqlx::query_as(ACTIVE_GENERATION)
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
        for row in select_in(conn, ROSTERS, &[], &missing).await? {
            let school: SchoolId = id(&row, 0)?;
            let roster: Arc<School> = Arc::new(json(&row, 1)?);
            if let Some(at) = at {
                cache.put(school, at, Arc::clone(&roster));
            }
            rules.schools.insert(school, roster);
        }
        let children: Vec<String> = children.into_iter().collect();
        for row in select_in(conn, DECISIONS, &[], &children).await? {
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
    let row = sqlx::query(POST_OF_MEDIA)
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
    Ok(at_once(db, media_id)
        .await?
        .map(|found| found.map(|(_, _, answer)| answer)))
}

/// A published media item as a read sees it, all from one snapshot of the read model: where it
/// was posted, its school's roster at that snapshot (the one the answer was worked out on) and
/// who may see it.
#[derive(Debug, Clone)]
pub struct MediaAnswer {
    /// Where the item was posted, and whether it is live.
    pub place: MediaPlace,
    /// The school's roster as the read model has it at the answer's snapshot.
    pub roster: Arc<School>,
    /// Who may see the item, and who is withheld.
    pub visibility: MediaVisibility,
}

/// [`media_place`], the school's roster and [`who_may_see`] in one statement, as
/// [`who_may_see_at_once`] reads them: what a read of a media item needs to decide the caller's
/// standing and answer. `None` when it cannot be answered that way (the roster is not cached
/// for this snapshot, or the item is not known to the read model yet): the caller then goes the
/// long way ([`media_place`], the roster from the log, [`who_may_see`]), which also fills the
/// roster cache.
///
/// # Errors
/// Database failures; a stored state this build cannot read.
pub async fn media_answer(
    db: &ReadDb,
    media_id: MediaId,
) -> Result<Option<MediaAnswer>, ProjectionError> {
    Ok(at_once(db, media_id)
        .await?
        .flatten()
        .and_then(|(place, roster, visibility)| {
            roster.map(|roster| MediaAnswer {
                place,
                roster,
                visibility,
            })
        }))
}

/// The one statement behind [`who_may_see_at_once`] and [`media_answer`]: `None` when the
/// roster is not cached for the snapshot read, `Some(None)` for an item never published.
async fn at_once(
    db: &ReadDb,
    media_id: MediaId,
) -> Result<Option<Option<(MediaPlace, Option<Arc<School>>, MediaVisibility)>>, ProjectionError> {
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
    let place = MediaPlace {
        media_id,
        post_id: id(&row, 0)?,
        school_id: id(&row, 1)?,
        group_id: id(&row, 2)?,
        live: row.try_get::<i64, _>(9)? != 0,
    };
    let mut schools = HashMap::new();
    let mut roster = None;
    if let Some(school) = post.school_id {
        match db.rosters().get(school, (generation, position)) {
            Some(cached) => {
                roster = Some(Arc::clone(&cached));
                schools.insert(school, cached);
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
    let answer = rules.answer(&post, media_id)?;
    Ok(Some(Some((place, roster, answer))))
}

/// See [`who_may_see_at_once`]: `$1` the media item, `$2` this projection's name.
const WHO_MAY_SEE_SQLITE: &str = include_str!("sql/sqlite/who_may_see.sql");

/// [`WHO_MAY_SEE_SQLITE`] in PostgreSQL's JSON dialect. `= ANY(ARRAY(…))`, not `IN (…)`: the
/// planner guesses 10,000 tagged children from the JSON functions and answers `IN` with a
/// scan of every decision instead of going through the key
/// (`docs/decisions/0010-facts-as-rows-summaries-when-asked.md`).
const WHO_MAY_SEE_POSTGRES: &str = include_str!("sql/postgres/who_may_see.sql");

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

/// The feed's query; `cursor` is (`posted_at`, post id) of the last post already seen (an empty
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
    let rows = sqlx::query(FEED)
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

/// The live posts of `group`, newest first (then by post id), each with every live media item:
/// a privileged read (a compliance officer's), not a reader's feed. At most `limit`, only after
/// `after` (the last post of the previous page) in that order.
///
/// # Errors
/// As [`who_may_see`].
pub async fn group_posts(
    db: &ReadDb,
    group: GroupId,
    limit: u32,
    after: Option<(DateTime<Utc>, PostId)>,
) -> Result<Vec<FeedPost>, ProjectionError> {
    let (before, before_id) = after.map_or((i64::MAX, String::new()), |(t, p)| {
        (micros(t), p.to_string())
    });
    let mut tx = snapshot(db).await?;
    let rows = sqlx::query(GROUP_POSTS)
        .bind(group.to_string())
        .bind(before)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
    let posts = with_media(&mut tx, db.rosters(), &rows, None).await?;
    tx.rollback().await?;
    Ok(posts)
}

/// Rows of a post's columns ([`post_state`]) and `body` as feed posts, each with the media items `reader` may
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
    for row in select_in(tx, MEDIA_OF_POSTS, &[], &ids).await? {
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
    let rows = sqlx::query(POST)
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
    let row = sqlx::query(MEDIA_PLACE)
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
    let rows = sqlx::query(LIVE_MEDIA_SHOWING)
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

/// Live posts whose school's retention period ([`school::SchoolSettings::retention_days`](kring_domain::school::SchoolSettings::retention_days)) has
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
    let schools = sqlx::query(ALL_ROSTERS).fetch_all(&mut *conn).await?;
    let mut due: Vec<(i64, PostId)> = Vec::new();
    for row in schools {
        let school: School = json(&row, 0)?;
        let cutoff = now - chrono::Duration::days(i64::from(school.settings.retention_days));
        for group_id in school.groups.keys() {
            let rows = sqlx::query(DUE_FOR_EXPIRY)
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
