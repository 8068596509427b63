//! The notification outbox: who is to be told that a message was posted, or that a new
//! consent-policy version asks them to decide again, and when — respecting staff quiet hours
//! ("stiltemodus") — plus the availability parents see.
//!
//! Rules:
//! - A consent-policy version that gives a purpose a new meaning (a reworded or a newly asked
//!   purpose; never the first version) notifies every guardian of a child of the school, once,
//!   at once (kind `consent_needed`); which purposes need a decision is the consent read
//!   model's answer.
//! - A message posted in a conversation notifies each *other* participant who is still on their
//!   side of it: staff still on the conversation's school's staff, guardians still linked to the
//!   conversation's child. The author is never notified.
//! - A notification to a staff member who is in quiet hours at the message's time — by their
//!   own schedule as of that event in the log, or else their school's default quiet hours
//!   (a school setting) — is held until that quiet period ends
//!   ([`QuietHours::quiet_until`], chained periods counting as one); any other notification is
//!   due at once. Guardians have no quiet hours.
//! - A notification carries ids only, never the message's text.
//! - Its id is derived from what it is about (the message, or the policy version's event) and the
//!   recipient ([`NotificationId`]), so a rebuild of the read model yields the same ids.
//! - Deliveries are recorded by the delivery worker in `notification_deliveries`, a table outside
//!   the projection's generations ([`ensure_delivery_table`], [`mark_delivered`]): a rebuild keeps
//!   them, and [`due`] never offers a delivered notification again.

use crate::bulk::Cell;
use crate::bulk::{select_packed, Bulk, Packed};
use crate::db::{from_micros, micros, to_i64, to_u64, uuid, Backend, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::conversation::{ConversationEvent, ConversationStarted, MessagePosted};
use kring_domain::person::{PersonEvent, QuietHours};
use kring_domain::school::{ConsentPolicy, ConsentPolicyPublished, SchoolEvent};
use kring_domain::{ConversationId, Event, MessageId, PersonId, SchoolId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::any::AnyRow;
use sqlx::{Acquire, Executor, Row};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The projection. It buffers a batch's events, loads the state their messages need with a few
/// IN queries, evolves it in log order in memory and writes the outcome in bulk.
#[derive(Debug, Default)]
pub struct OutboxProjection {
    buffer: Buffer<(u64, DateTime<Utc>, Needed)>,
}

/// The events this model needs.
#[derive(Debug)]
enum Needed {
    StaffJoined(String, String),
    StaffLeft(String, String),
    GuardianLinked(String, String),
    GuardianUnlinked(String, String),
    ChildUnenrolled(String),
    /// A child placed in a school (child, school).
    ChildEnrolled(String, String),
    /// A consent-policy version, and the id of the event that published it.
    PolicyPublished(ConsentPolicyPublished, Uuid),
    QuietHoursSet(String, String),
    QuietHoursCleared(String),
    /// A school's default quiet hours for staff (JSON), or none.
    SchoolQuietHours(String, Option<String>),
    Started(ConversationStarted),
    Posted(MessagePosted),
}

/// Its name.
pub const NAME: &str = "outbox";

const SCHEMA: &str = "
CREATE TABLE {outbox_notifications} (
    notification_id TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    recipient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT,
    message_id TEXT,
    school_id TEXT,
    policy_version BIGINT,
    created_at BIGINT NOT NULL,
    release_at BIGINT NOT NULL
);
CREATE TABLE {outbox_conversations} (
    conversation_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    child_id TEXT NOT NULL
);
CREATE TABLE {outbox_participants} (
    conversation_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, person_id)
);
CREATE TABLE {outbox_staff} (
    school_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (school_id, person_id)
);
CREATE INDEX {outbox_staff}_by_person ON {outbox_staff} (person_id);
CREATE TABLE {outbox_guardians} (
    child_id TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    PRIMARY KEY (child_id, guardian_id)
);
CREATE TABLE {outbox_quiet_hours} (
    person_id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    set_at BIGINT NOT NULL
);
CREATE TABLE {outbox_school_quiet_hours} (
    school_id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL
);
CREATE TABLE {outbox_children} (
    child_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL
);
CREATE INDEX {outbox_children}_by_school ON {outbox_children} (school_id);
CREATE TABLE {outbox_policies} (
    school_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL
)";

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = "
CREATE INDEX {outbox_notifications}_by_release ON {outbox_notifications} (release_at);
CREATE INDEX {outbox_notifications}_by_recipient ON {outbox_notifications} (recipient_id, release_at)";

const STAFF: &str = "INSERT INTO {outbox_staff} (school_id, person_id)";
const STAFF_LEFT: &str = "DELETE FROM {outbox_staff} WHERE school_id = $1 AND person_id = $2";
const GUARDIANS: &str = "INSERT INTO {outbox_guardians} (child_id, guardian_id)";
const GUARDIAN_UNLINKED: &str =
    "DELETE FROM {outbox_guardians} WHERE child_id = $1 AND guardian_id = $2";
const CHILD_UNENROLLED: &str = "DELETE FROM {outbox_guardians} WHERE child_id = $1";
const QUIET_HOURS: &str = "INSERT INTO {outbox_quiet_hours} (person_id, schedule, set_at)";
const QUIET_HOURS_SUFFIX: &str =
    "ON CONFLICT (person_id) DO UPDATE SET schedule = excluded.schedule, set_at = excluded.set_at";
const QUIET_HOURS_CLEARED: &str = "DELETE FROM {outbox_quiet_hours} WHERE person_id = $1";
const SCHOOL_QUIET_HOURS: &str = "INSERT INTO {outbox_school_quiet_hours} (school_id, schedule)";
const SCHOOL_QUIET_HOURS_SUFFIX: &str =
    "ON CONFLICT (school_id) DO UPDATE SET schedule = excluded.schedule";
const SCHOOL_QUIET_HOURS_CLEARED: &str =
    "DELETE FROM {outbox_school_quiet_hours} WHERE school_id = $1";
const LOAD_SCHOOL_QUIET_HOURS: &str =
    "SELECT school_id, schedule FROM {outbox_school_quiet_hours} WHERE school_id IN ({in})";
const CONVERSATIONS: &str =
    "INSERT INTO {outbox_conversations} (conversation_id, school_id, child_id)";
const PARTICIPANTS: &str = "INSERT INTO {outbox_participants} (conversation_id, person_id)";
const NOTIFY: &str = "INSERT INTO {outbox_notifications} (notification_id, position, recipient_id, kind, conversation_id,
    message_id, school_id, policy_version, created_at, release_at)";
const CHILDREN: &str = "INSERT INTO {outbox_children} (child_id, school_id)";
const CHILD_LEFT: &str = "DELETE FROM {outbox_children} WHERE child_id = $1";
const POLICIES: &str = "INSERT INTO {outbox_policies} (school_id, policy)";
const POLICIES_SUFFIX: &str = "ON CONFLICT (school_id) DO UPDATE SET policy = excluded.policy";
const LOAD_POLICIES: &str =
    "SELECT school_id, policy FROM {outbox_policies} WHERE school_id IN ({in})";
const LOAD_CHILDREN_OF_SCHOOLS: &str =
    "SELECT child_id, school_id FROM {outbox_children} WHERE school_id IN ({in})";
const DO_NOTHING: &str = "ON CONFLICT DO NOTHING";
const LOAD_CONVERSATIONS: &str =
    "SELECT conversation_id, school_id, child_id FROM {outbox_conversations}
WHERE conversation_id IN ({in})";
const LOAD_PARTICIPANTS: &str = "SELECT conversation_id, person_id FROM {outbox_participants}
WHERE conversation_id IN ({in})";
const LOAD_STAFF: &str =
    "SELECT school_id, person_id FROM {outbox_staff} WHERE person_id IN ({in})";
const LOAD_GUARDIANS: &str =
    "SELECT child_id, guardian_id FROM {outbox_guardians} WHERE child_id IN ({in})";
const LOAD_QUIET_HOURS: &str =
    "SELECT person_id, schedule FROM {outbox_quiet_hours} WHERE person_id IN ({in})";

/// Where the delivery worker records deliveries: outside the projection's generation tables, so
/// that a rebuild keeps them.
const DELIVERY_TABLE: &str = "CREATE TABLE IF NOT EXISTS notification_deliveries (
    notification_id TEXT PRIMARY KEY,
    delivered_at BIGINT NOT NULL
)";
const DELIVERY_LOCK: &str = "SELECT pg_advisory_xact_lock(7077346)";
const MARK_DELIVERED: &str =
    "INSERT INTO notification_deliveries (notification_id, delivered_at) VALUES ($1, $2)
ON CONFLICT (notification_id) DO NOTHING";

/// The head of every notification query: its columns in [`notification_from`]'s order, with the
/// delivery, if any.
macro_rules! select_notifications {
    ($rest:literal) => {
        concat!(
            "SELECT n.notification_id, n.position, n.recipient_id, n.kind, n.conversation_id, n.message_id,
    n.created_at, n.release_at, d.notification_id, n.school_id, n.policy_version
FROM outbox_notifications n
LEFT JOIN notification_deliveries d ON d.notification_id = n.notification_id
",
            $rest
        )
    };
}
const DUE: &str = select_notifications!(
    "WHERE n.release_at <= $1 AND d.notification_id IS NULL
ORDER BY n.created_at, n.position, n.recipient_id
LIMIT $2"
);
const HELD: &str = select_notifications!(
    "WHERE n.recipient_id = $1 AND n.release_at > $2 AND d.notification_id IS NULL
ORDER BY n.release_at, n.created_at, n.position"
);
const UNDELIVERED_OF: &str = select_notifications!(
    "WHERE n.recipient_id = $1 AND d.notification_id IS NULL
ORDER BY n.release_at, n.created_at, n.position
LIMIT $2"
);
const ONE: &str = select_notifications!("WHERE n.notification_id = $1");
const SCHEDULE_OF_STAFF: &str = "SELECT q.schedule FROM outbox_quiet_hours q
WHERE q.person_id = $1 AND EXISTS (SELECT 1 FROM outbox_staff s WHERE s.person_id = q.person_id)";
const SCHOOL_SCHEDULE_OF_STAFF: &str = "SELECT q.schedule FROM outbox_staff s
JOIN outbox_school_quiet_hours q ON q.school_id = s.school_id
WHERE s.person_id = $1 ORDER BY s.school_id LIMIT 1";

#[async_trait]
impl Projection for OutboxProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "outbox_notifications",
            "outbox_conversations",
            "outbox_participants",
            "outbox_staff",
            "outbox_guardians",
            "outbox_quiet_hours",
            "outbox_school_quiet_hours",
            "outbox_children",
            "outbox_policies",
        ]
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
        let pair = |a: String, b: PersonId| (a, b.to_string());
        let needed = match e.event {
            Event::School(SchoolEvent::StaffJoined(s)) => {
                let (a, b) = pair(s.school_id.to_string(), s.person_id);
                Some(Needed::StaffJoined(a, b))
            }
            Event::School(SchoolEvent::StaffLeft(s)) => {
                let (a, b) = pair(s.school_id.to_string(), s.person_id);
                Some(Needed::StaffLeft(a, b))
            }
            Event::School(SchoolEvent::GuardianLinked(g)) => {
                let (a, b) = pair(g.child_id.to_string(), g.guardian_id);
                Some(Needed::GuardianLinked(a, b))
            }
            Event::School(SchoolEvent::GuardianUnlinked(g)) => {
                let (a, b) = pair(g.child_id.to_string(), g.guardian_id);
                Some(Needed::GuardianUnlinked(a, b))
            }
            Event::School(SchoolEvent::ChildUnenrolled(c)) => {
                Some(Needed::ChildUnenrolled(c.child_id.to_string()))
            }
            Event::School(SchoolEvent::ChildEnrolled(c)) => Some(Needed::ChildEnrolled(
                c.child_id.to_string(),
                c.school_id.to_string(),
            )),
            Event::School(SchoolEvent::ConsentPolicyPublished(p)) => {
                Some(Needed::PolicyPublished(p.clone(), e.recorded.event_id))
            }
            Event::Person(PersonEvent::QuietHoursSet(q)) => Some(Needed::QuietHoursSet(
                q.person_id.to_string(),
                serde_json::to_string(&q.schedule)?,
            )),
            Event::Person(PersonEvent::QuietHoursCleared(q)) => {
                Some(Needed::QuietHoursCleared(q.person_id.to_string()))
            }
            Event::School(SchoolEvent::SchoolSettingsChanged(c)) => Some(Needed::SchoolQuietHours(
                c.school_id.to_string(),
                c.settings
                    .default_quiet_hours
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()?,
            )),
            Event::Conversation(ConversationEvent::ConversationStarted(c)) => {
                Some(Needed::Started(c.clone()))
            }
            Event::Conversation(ConversationEvent::MessagePosted(m)) => {
                Some(Needed::Posted(m.clone()))
            }
            _ => None,
        };
        let needed = needed.map(|n| (e.recorded.position, e.recorded.occurred_at, n));
        self.buffer.push(t, e.recorded.position, needed);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let batch = self.buffer.take(t);
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = State::load(tx, t, &batch).await?;
        let mut notifications = Bulk::new(t.sql(NOTIFY), 10, DO_NOTHING);
        for (position, at, needed) in batch {
            state.evolve(position, at, needed, &mut notifications)?;
        }
        state.write(tx, t).await?;
        notifications.execute(tx).await?;
        Ok(())
    }
}

/// What one batch reads and changes, in memory.
#[derive(Default)]
struct State {
    /// Conversation → (school, child, participants): loaded, or started in the batch.
    conversations: HashMap<String, (String, String, Vec<String>)>,
    started: Vec<String>,
    staff: HashSet<(String, String)>,
    guardians: HashSet<(String, String)>,
    quiet: HashMap<String, Option<(String, i64)>>,
    /// Each school's default quiet hours for staff without their own.
    school_quiet: HashMap<String, Option<String>>,
    /// The school of each child, for the schools whose policy changes in the batch (and the
    /// children the batch enrols).
    child_school: HashMap<String, String>,
    /// Each of those schools' consent policy, folded so far.
    policies: HashMap<String, ConsentPolicy>,
    children_dirty: BTreeSet<String>,
    policies_dirty: BTreeSet<String>,
    /// Keys whose final state must be written.
    staff_dirty: BTreeSet<(String, String)>,
    guardians_dirty: BTreeSet<(String, String)>,
    quiet_dirty: BTreeSet<String>,
    school_quiet_dirty: BTreeSet<String>,
    unenrolled: BTreeSet<String>,
}

fn rows(rows: &Packed) -> impl Iterator<Item = Result<(String, String), ProjectionError>> + '_ {
    rows.rows().map(|r| {
        let r = r?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    })
}

impl State {
    /// Loads the conversations the batch's messages go to, their participants, and the staff,
    /// guardian and quiet-hours rows of those people and children.
    async fn load(
        tx: &mut Tx,
        t: &Tables,
        batch: &[(u64, DateTime<Utc>, Needed)],
    ) -> Result<Self, ProjectionError> {
        let mut state = Self::default();
        let mut wanted = BTreeSet::new();
        for (_, _, needed) in batch {
            match needed {
                Needed::Started(c) => {
                    let id = c.conversation_id.to_string();
                    wanted.remove(&id);
                    state.started.push(id.clone());
                    state.conversations.insert(
                        id,
                        (
                            c.school_id.to_string(),
                            c.child_id.to_string(),
                            c.participants.iter().map(ToString::to_string).collect(),
                        ),
                    );
                }
                Needed::Posted(m) => {
                    let id = m.conversation_id.to_string();
                    if !state.conversations.contains_key(&id) {
                        wanted.insert(id);
                    }
                }
                _ => {}
            }
        }
        let wanted: Vec<String> = wanted.into_iter().collect();
        // Schools whose policy changes: their policy so far, their children and those children's
        // guardians (loaded with the conversations' ones below).
        let policy_schools: Vec<String> = batch
            .iter()
            .filter_map(|(_, _, n)| match n {
                Needed::PolicyPublished(p, _) => Some(p.school_id.to_string()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !policy_schools.is_empty() {
            let (policies, children) = {
                let mut fork = tx.fork();
                let (a, b) = (t.sql(LOAD_POLICIES), t.sql(LOAD_CHILDREN_OF_SCHOOLS));
                tokio::try_join!(
                    select_packed(tx, &a, &[], &policy_schools),
                    select_packed(&mut fork, &b, &[], &policy_schools),
                )?
            };
            for pair in rows(&policies) {
                let (school, policy) = pair?;
                state
                    .policies
                    .insert(school, serde_json::from_str(&policy)?);
            }
            for pair in rows(&children) {
                let (child, school) = pair?;
                state.child_school.insert(child, school);
            }
        }
        // Two rounds of queries, each sent at once (see `Tx::fork`): the conversations with
        // their participants, then the staff, guardian and quiet-hours rows of those.
        let (conversations, participants) = {
            let mut fork = tx.fork();
            let (a, b) = (t.sql(LOAD_CONVERSATIONS), t.sql(LOAD_PARTICIPANTS));
            tokio::try_join!(
                select_packed(tx, &a, &[], &wanted),
                select_packed(&mut fork, &b, &[], &wanted),
            )?
        };
        for row in conversations.rows() {
            let row = row?;
            state.conversations.insert(
                row.try_get(0)?,
                (row.try_get(1)?, row.try_get(2)?, Vec::new()),
            );
        }
        for pair in rows(&participants) {
            let (conversation, person) = pair?;
            if let Some(c) = state.conversations.get_mut(&conversation) {
                c.2.push(person);
            }
        }
        // A packed load comes in no order; the participants of a loaded conversation go in
        // the order of their ids.
        for id in &wanted {
            if let Some(c) = state.conversations.get_mut(id) {
                c.2.sort();
            }
        }
        let people: BTreeSet<&String> = state.conversations.values().flat_map(|c| &c.2).collect();
        let people: Vec<String> = people.into_iter().cloned().collect();
        let children: BTreeSet<&String> = state
            .conversations
            .values()
            .map(|c| &c.1)
            .chain(state.child_school.keys())
            .collect();
        let children: Vec<String> = children.into_iter().cloned().collect();
        let schools: BTreeSet<&String> = state.conversations.values().map(|c| &c.0).collect();
        let schools: Vec<String> = schools.into_iter().cloned().collect();
        let (staff, guardians, quiet, school_quiet) = {
            let (mut fork, mut another, mut third) = (tx.fork(), tx.fork(), tx.fork());
            let (a, b, c, d) = (
                t.sql(LOAD_STAFF),
                t.sql(LOAD_GUARDIANS),
                t.sql(LOAD_QUIET_HOURS),
                t.sql(LOAD_SCHOOL_QUIET_HOURS),
            );
            tokio::try_join!(
                select_packed(tx, &a, &[], &people),
                select_packed(&mut fork, &b, &[], &children),
                select_packed(&mut another, &c, &[], &people),
                select_packed(&mut third, &d, &[], &schools),
            )?
        };
        for pair in rows(&school_quiet) {
            let (school, schedule) = pair?;
            state.school_quiet.insert(school, Some(schedule));
        }
        for pair in rows(&staff) {
            state.staff.insert(pair?);
        }
        for pair in rows(&guardians) {
            state.guardians.insert(pair?);
        }
        for pair in rows(&quiet) {
            let (person, schedule) = pair?;
            state.quiet.insert(person, Some((schedule, 0)));
        }
        Ok(state)
    }

    fn evolve(
        &mut self,
        position: u64,
        occurred_at: DateTime<Utc>,
        needed: Needed,
        notifications: &mut Bulk,
    ) -> Result<(), ProjectionError> {
        match needed {
            Needed::StaffJoined(school, person) => {
                self.staff.insert((school.clone(), person.clone()));
                self.staff_dirty.insert((school, person));
            }
            Needed::StaffLeft(school, person) => {
                self.staff.remove(&(school.clone(), person.clone()));
                self.staff_dirty.insert((school, person));
            }
            Needed::GuardianLinked(child, person) => {
                self.guardians.insert((child.clone(), person.clone()));
                self.guardians_dirty.insert((child, person));
            }
            Needed::GuardianUnlinked(child, person) => {
                self.guardians.remove(&(child.clone(), person.clone()));
                self.guardians_dirty.insert((child, person));
            }
            Needed::ChildUnenrolled(child) => {
                self.guardians.retain(|(c, _)| *c != child);
                self.guardians_dirty.retain(|(c, _)| *c != child);
                self.child_school.remove(&child);
                self.children_dirty.remove(&child);
                self.unenrolled.insert(child);
            }
            Needed::QuietHoursSet(person, schedule) => {
                self.quiet
                    .insert(person.clone(), Some((schedule, micros(occurred_at))));
                self.quiet_dirty.insert(person);
            }
            Needed::QuietHoursCleared(person) => {
                self.quiet.insert(person.clone(), None);
                self.quiet_dirty.insert(person);
            }
            Needed::ChildEnrolled(child, school) => {
                self.child_school.insert(child.clone(), school);
                self.children_dirty.insert(child);
            }
            Needed::PolicyPublished(p, event_id) => {
                self.consent_needed(&p, event_id, position, occurred_at, notifications)?;
            }
            Needed::SchoolQuietHours(school, schedule) => {
                self.school_quiet.insert(school.clone(), schedule);
                self.school_quiet_dirty.insert(school);
            }
            // Loaded (with its participants) in `load`.
            Needed::Started(_) => {}
            Needed::Posted(m) => self.notify(&m, position, notifications)?,
        }
        Ok(())
    }

    /// The notifications of one message, by the state as of its event.
    fn notify(
        &self,
        m: &MessagePosted,
        position: u64,
        notifications: &mut Bulk,
    ) -> Result<(), ProjectionError> {
        let conversation = m.conversation_id.to_string();
        let Some((school, child, participants)) = self.conversations.get(&conversation) else {
            return Err(ProjectionError::Invalid(format!(
                "message {} posted to conversation {conversation}, which never started",
                m.message_id
            )));
        };
        let author = m.author_id.to_string();
        let mut recipients: Vec<&String> = participants.iter().filter(|p| **p != author).collect();
        recipients.sort();
        recipients.dedup();
        for recipient in recipients {
            let is_staff = self.staff.contains(&(school.clone(), recipient.clone()));
            let is_guardian = self.guardians.contains(&(child.clone(), recipient.clone()));
            if !is_staff && !is_guardian {
                // Left the school, or no longer the child's guardian: no longer told.
                continue;
            }
            let quiet_until = if is_staff {
                // Their own schedule, or else the school's default.
                let own = self.quiet.get(recipient).and_then(|q| q.as_ref());
                let schedule = own
                    .map(|(s, _)| s.as_str())
                    .or_else(|| self.school_quiet.get(school).and_then(|q| q.as_deref()));
                quiet_until(schedule, m.at)?
            } else {
                None
            };
            let id = NotificationId {
                about: m.message_id.as_uuid(),
                recipient_id: PersonId::from_uuid(uuid(recipient)?),
            };
            notifications.row([
                id.to_string().into(),
                to_i64(position).into(),
                recipient.as_str().into(),
                NotificationKind::Message.as_str().into(),
                conversation.as_str().into(),
                m.message_id.to_string().into(),
                Cell::Null,
                Cell::NullInt,
                micros(m.at).into(),
                micros(quiet_until.unwrap_or(m.at)).into(),
            ]);
        }
        Ok(())
    }

    /// The notifications of a policy version: when it gives some purpose a new meaning, one to
    /// every guardian of a child of the school as of its event.
    fn consent_needed(
        &mut self,
        p: &ConsentPolicyPublished,
        event_id: Uuid,
        position: u64,
        at: DateTime<Utc>,
        notifications: &mut Bulk,
    ) -> Result<(), ProjectionError> {
        let school = p.school_id.to_string();
        let earlier = self.policies.get(&school);
        let next = ConsentPolicy::following(earlier, p.version, p.purposes.clone());
        // The first version asks for the first time: the school's own start, nobody to re-ask.
        let new_meaning = earlier.is_some() && next.since.values().any(|since| *since == p.version);
        self.policies.insert(school.clone(), next);
        self.policies_dirty.insert(school.clone());
        if !new_meaning {
            return Ok(());
        }
        let mut recipients: BTreeSet<&String> = BTreeSet::new();
        for (child, guardian) in &self.guardians {
            if self.child_school.get(child) == Some(&school) {
                recipients.insert(guardian);
            }
        }
        for recipient in recipients {
            let id = NotificationId {
                about: event_id,
                recipient_id: PersonId::from_uuid(uuid(recipient)?),
            };
            notifications.row([
                id.to_string().into(),
                to_i64(position).into(),
                recipient.as_str().into(),
                NotificationKind::ConsentNeeded.as_str().into(),
                Cell::Null,
                Cell::Null,
                school.as_str().into(),
                i64::from(p.version).into(),
                micros(at).into(),
                micros(at).into(),
            ]);
        }
        Ok(())
    }

    /// Writes the final state of every key the batch changed.
    async fn write(self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let mut conversations = Bulk::new(t.sql(CONVERSATIONS), 3, DO_NOTHING);
        let mut participants = Bulk::new(t.sql(PARTICIPANTS), 2, DO_NOTHING);
        for id in &self.started {
            if let Some((school, child, people)) = self.conversations.get(id) {
                conversations.row([
                    id.as_str().into(),
                    school.as_str().into(),
                    child.as_str().into(),
                ]);
                for person in people {
                    participants.row([id.as_str().into(), person.as_str().into()]);
                }
            }
        }
        conversations.execute(tx).await?;
        participants.execute(tx).await?;
        // Removals are rare (staff leaving, guardians unlinked, quiet hours cleared): one
        // statement each; additions go in bulk.
        for child in &self.unenrolled {
            tx.execute(&t.sql(CHILD_UNENROLLED), vec![Cell::from(child)])
                .await?;
        }
        let mut staff = Bulk::new(t.sql(STAFF), 2, DO_NOTHING);
        for key in &self.staff_dirty {
            if self.staff.contains(key) {
                staff.row([key.0.as_str().into(), key.1.as_str().into()]);
            } else {
                tx.execute(
                    &t.sql(STAFF_LEFT),
                    vec![Cell::from(&key.0), Cell::from(&key.1)],
                )
                .await?;
            }
        }
        staff.execute(tx).await?;
        let mut guardians = Bulk::new(t.sql(GUARDIANS), 2, DO_NOTHING);
        for key in &self.guardians_dirty {
            if self.guardians.contains(key) {
                guardians.row([key.0.as_str().into(), key.1.as_str().into()]);
            } else {
                tx.execute(
                    &t.sql(GUARDIAN_UNLINKED),
                    vec![Cell::from(&key.0), Cell::from(&key.1)],
                )
                .await?;
            }
        }
        guardians.execute(tx).await?;
        let mut quiet = Bulk::new(t.sql(QUIET_HOURS), 3, QUIET_HOURS_SUFFIX);
        for person in &self.quiet_dirty {
            match self.quiet.get(person).and_then(Option::as_ref) {
                Some((schedule, set_at)) => {
                    quiet.row([
                        person.as_str().into(),
                        schedule.as_str().into(),
                        (*set_at).into(),
                    ]);
                }
                None => {
                    tx.execute(&t.sql(QUIET_HOURS_CLEARED), vec![Cell::from(person)])
                        .await?;
                }
            }
        }
        quiet.execute(tx).await?;
        let mut school_quiet = Bulk::new(t.sql(SCHOOL_QUIET_HOURS), 2, SCHOOL_QUIET_HOURS_SUFFIX);
        for school in &self.school_quiet_dirty {
            match self.school_quiet.get(school).and_then(Option::as_ref) {
                Some(schedule) => {
                    school_quiet.row([school.as_str().into(), schedule.as_str().into()])
                }
                None => {
                    tx.execute(&t.sql(SCHOOL_QUIET_HOURS_CLEARED), vec![Cell::from(school)])
                        .await?;
                }
            }
        }
        school_quiet.execute(tx).await?;
        let mut children = Bulk::new(t.sql(CHILDREN), 2, DO_NOTHING);
        for child in &self.children_dirty {
            if let Some(school) = self.child_school.get(child) {
                children.row([child.as_str().into(), school.as_str().into()]);
            }
        }
        children.execute(tx).await?;
        for child in &self.unenrolled {
            tx.execute(&t.sql(CHILD_LEFT), vec![Cell::from(child)])
                .await?;
        }
        let mut policies = Bulk::new(t.sql(POLICIES), 2, POLICIES_SUFFIX);
        for school in &self.policies_dirty {
            if let Some(policy) = self.policies.get(school) {
                policies.row([
                    school.as_str().into(),
                    serde_json::to_string(policy)?.into(),
                ]);
            }
        }
        policies.execute(tx).await?;
        Ok(())
    }
}

/// When the quiet period covering `at` ends under the stored `schedule`, if one does.
fn quiet_until(
    schedule: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    let Some(schedule) = schedule else {
        return Ok(None);
    };
    let schedule: QuietHours = serde_json::from_str(schedule)?;
    Ok(schedule.quiet_until(at))
}

/// A notification's id: what it is about (the message, or the event that published a policy
/// version) and its recipient. Derived, never minted, so a rebuild of the outbox yields the same
/// ids and recorded deliveries still match. Written as `<about>:<recipient id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NotificationId {
    /// The message, or the policy version's event.
    pub about: Uuid,
    /// The person told about it.
    pub recipient_id: PersonId,
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.about, self.recipient_id)
    }
}

impl FromStr for NotificationId {
    type Err = ProjectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProjectionError::Invalid(format!("{s:?} is not a notification id"));
        let (about, recipient) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            about: about.parse().map_err(|_| bad())?,
            recipient_id: recipient.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for NotificationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NotificationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A message was posted in a conversation the recipient takes part in.
    Message,
    /// A new consent-policy version asks the recipient, a guardian, to decide again.
    ConsentNeeded,
}

impl NotificationKind {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::ConsentNeeded => "consent_needed",
        }
    }
}

impl FromStr for NotificationKind {
    type Err = ProjectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "message" => Ok(Self::Message),
            "consent_needed" => Ok(Self::ConsentNeeded),
            other => Err(ProjectionError::Invalid(format!(
                "unknown notification kind {other:?}"
            ))),
        }
    }
}

/// One notification: ids and times only, never a message's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Its id.
    pub id: NotificationId,
    /// The global position of the event that caused it.
    pub position: u64,
    /// Who is told.
    pub recipient_id: PersonId,
    /// What about.
    pub kind: NotificationKind,
    /// The conversation (a message).
    pub conversation_id: Option<ConversationId>,
    /// The message (a message).
    pub message_id: Option<MessageId>,
    /// The school (a consent decision needed).
    pub school_id: Option<SchoolId>,
    /// The policy version that asks for it (a consent decision needed).
    pub policy_version: Option<u32>,
    /// When what it is about happened.
    pub created_at: DateTime<Utc>,
    /// When it may be delivered: `created_at`, or the end of the recipient's quiet period.
    pub release_at: DateTime<Utc>,
    /// Whether the delivery worker has delivered it.
    pub delivered: bool,
}

impl Notification {
    /// Whether it was held for the recipient's quiet hours.
    #[must_use]
    pub fn was_held(&self) -> bool {
        self.release_at > self.created_at
    }
}

fn notification_from(row: &AnyRow) -> Result<Notification, ProjectionError> {
    Ok(Notification {
        id: row.try_get::<String, _>(0)?.parse()?,
        position: to_u64(row.try_get(1)?)?,
        recipient_id: PersonId::from_uuid(uuid(&row.try_get::<String, _>(2)?)?),
        kind: row.try_get::<String, _>(3)?.parse()?,
        conversation_id: optional_id(row, 4)?.map(ConversationId::from_uuid),
        message_id: optional_id(row, 5)?.map(MessageId::from_uuid),
        created_at: from_micros(row.try_get(6)?)?,
        release_at: from_micros(row.try_get(7)?)?,
        delivered: row.try_get::<Option<String>, _>(8)?.is_some(),
        school_id: optional_id(row, 9)?.map(SchoolId::from_uuid),
        policy_version: row
            .try_get::<Option<i64>, _>(10)?
            .map(|v| {
                u32::try_from(v).map_err(|_| {
                    ProjectionError::Invalid(format!("policy version {v} in the outbox"))
                })
            })
            .transpose()?,
    })
}

fn optional_id(row: &AnyRow, i: usize) -> Result<Option<Uuid>, ProjectionError> {
    row.try_get::<Option<String>, _>(i)?
        .map(|s| uuid(&s))
        .transpose()
}

/// Creates the table of deliveries if it does not exist yet. It lives outside the projection's
/// generations, so a rebuild keeps it. Call once at start-up wherever [`due`], [`held`],
/// [`notification`] or [`mark_delivered`] are used (the API and the delivery worker); safe to
/// call from several processes at once.
///
/// # Errors
/// Database failures.
pub async fn ensure_delivery_table(db: &ReadDb) -> Result<(), ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    if db.backend() == Backend::Postgres {
        // Concurrent `CREATE TABLE IF NOT EXISTS` can collide on PostgreSQL: serialise them.
        let mut tx = conn.begin().await?;
        tx.execute(DELIVERY_LOCK).await?;
        tx.execute(DELIVERY_TABLE).await?;
        tx.commit().await?;
    } else {
        conn.execute(DELIVERY_TABLE).await?;
    }
    Ok(())
}

/// Notifications due at `now` (released at or before it) and not delivered yet, oldest first,
/// at most `limit`: what the delivery worker sends next.
///
/// # Errors
/// Database failures; the delivery table missing ([`ensure_delivery_table`]).
pub async fn due(
    db: &ReadDb,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Notification>, ProjectionError> {
    let rows = sqlx::query(DUE)
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(notification_from).collect()
}

/// The notifications to `recipient` held at `now` for their quiet hours, soonest released first.
///
/// # Errors
/// Database failures; the delivery table missing ([`ensure_delivery_table`]).
pub async fn held(
    db: &ReadDb,
    recipient: PersonId,
    now: DateTime<Utc>,
) -> Result<Vec<Notification>, ProjectionError> {
    let rows = sqlx::query(HELD)
        .bind(recipient.to_string())
        .bind(micros(now))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(notification_from).collect()
}

/// The notifications to `recipient` not delivered yet, due and held alike, soonest released
/// first, at most `limit`: what a recipient's own app fetches (those released at or before now
/// are due; the rest are held for the recipient's quiet hours).
///
/// # Errors
/// Database failures; the delivery table missing ([`ensure_delivery_table`]).
pub async fn undelivered_of(
    db: &ReadDb,
    recipient: PersonId,
    limit: u32,
) -> Result<Vec<Notification>, ProjectionError> {
    let rows = sqlx::query(UNDELIVERED_OF)
        .bind(recipient.to_string())
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(notification_from).collect()
}

/// One notification, delivered or not.
///
/// # Errors
/// Database failures; the delivery table missing ([`ensure_delivery_table`]).
pub async fn notification(
    db: &ReadDb,
    id: NotificationId,
) -> Result<Option<Notification>, ProjectionError> {
    let row = sqlx::query(ONE)
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(notification_from).transpose()
}

/// Records that the notifications `ids` were delivered at `at`, in one transaction; returns how
/// many were not recorded as delivered before (marking twice changes nothing).
///
/// # Errors
/// Database failures; the delivery table missing ([`ensure_delivery_table`]).
pub async fn mark_delivered(
    db: &ReadDb,
    ids: &[NotificationId],
    at: DateTime<Utc>,
) -> Result<u64, ProjectionError> {
    let mut tx = db.pool().begin().await?;
    let mut marked = 0;
    for id in ids {
        marked += sqlx::query(MARK_DELIVERED)
            .bind(id.to_string())
            .bind(micros(at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(marked)
}

/// Whether a person can be reached now, as parents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Availability {
    /// Whether the person is in quiet hours: notifications to them are held.
    pub in_quiet_hours: bool,
    /// When the quiet period ends, while in one.
    pub until: Option<DateTime<Utc>>,
}

/// The availability of `person` at `now`: in quiet hours by their current schedule (staff only;
/// guardians have none), and until when. Unknown people are simply available.
///
/// # Errors
/// Database failures.
pub async fn availability(
    db: &ReadDb,
    person: PersonId,
    now: DateTime<Utc>,
) -> Result<Availability, ProjectionError> {
    let mut schedule: Option<String> = sqlx::query_scalar(SCHEDULE_OF_STAFF)
        .bind(person.to_string())
        .fetch_optional(db.pool())
        .await?;
    if schedule.is_none() {
        schedule = sqlx::query_scalar(SCHOOL_SCHEDULE_OF_STAFF)
            .bind(person.to_string())
            .fetch_optional(db.pool())
            .await?;
    }
    let until = quiet_until(schedule.as_deref(), now)?;
    Ok(Availability {
        in_quiet_hours: until.is_some(),
        until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_id_reads_back_as_written() {
        let id = NotificationId {
            about: uuid::Uuid::now_v7(),
            recipient_id: PersonId::from_uuid(uuid::Uuid::now_v7()),
        };
        assert_eq!(id.to_string().parse::<NotificationId>().ok(), Some(id));
        assert!("nonsense".parse::<NotificationId>().is_err());
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NotificationId>(&json).ok(), Some(id));
    }
}
