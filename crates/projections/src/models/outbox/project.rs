//! The write side: applying events to the outbox.

use super::{quiet_until, NotificationId, NotificationKind, NAME};
use crate::bulk::Cell;
use crate::bulk::{select_packed, Bulk, Packed};
use crate::db::{micros, to_i64, uuid};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::conversation::{ConversationEvent, ConversationStarted, MessagePosted};
use kring_domain::person::PersonEvent;
use kring_domain::school::{ConsentPolicy, ConsentPolicyPublished, SchoolEvent};
use kring_domain::{Event, PersonId};
use std::collections::{BTreeSet, HashMap, HashSet};
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

const SCHEMA: &str = include_str!("sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const STAFF: &str = include_str!("sql/staff.sql");
const STAFF_LEFT: &str = include_str!("sql/staff_left.sql");
const GUARDIANS: &str = include_str!("sql/guardians.sql");
const GUARDIAN_UNLINKED: &str = include_str!("sql/guardian_unlinked.sql");
const CHILD_UNENROLLED: &str = include_str!("sql/child_unenrolled.sql");
const QUIET_HOURS: &str = include_str!("sql/quiet_hours.sql");
const QUIET_HOURS_SUFFIX: &str = include_str!("sql/quiet_hours_suffix.sql");
const QUIET_HOURS_CLEARED: &str = include_str!("sql/quiet_hours_cleared.sql");
const SCHOOL_QUIET_HOURS: &str = include_str!("sql/school_quiet_hours.sql");
const SCHOOL_QUIET_HOURS_SUFFIX: &str = include_str!("sql/school_quiet_hours_suffix.sql");
const SCHOOL_QUIET_HOURS_CLEARED: &str = include_str!("sql/school_quiet_hours_cleared.sql");
const LOAD_SCHOOL_QUIET_HOURS: &str = include_str!("sql/load_school_quiet_hours.sql");
const CONVERSATIONS: &str = include_str!("sql/conversations.sql");
const PARTICIPANTS: &str = include_str!("sql/participants.sql");
const NOTIFY: &str = include_str!("sql/notify.sql");
const CHILDREN: &str = include_str!("sql/children.sql");
const CHILD_LEFT: &str = include_str!("sql/child_left.sql");
const POLICIES: &str = include_str!("sql/policies.sql");
const POLICIES_SUFFIX: &str = include_str!("sql/policies_suffix.sql");
const LOAD_POLICIES: &str = include_str!("sql/load_policies.sql");
const LOAD_CHILDREN_OF_SCHOOLS: &str = include_str!("sql/load_children_of_schools.sql");
const DO_NOTHING: &str = include_str!("sql/do_nothing.sql");
const LOAD_CONVERSATIONS: &str = include_str!("sql/load_conversations.sql");
const LOAD_PARTICIPANTS: &str = include_str!("sql/load_participants.sql");
const LOAD_STAFF: &str = include_str!("sql/load_staff.sql");
const LOAD_GUARDIANS: &str = include_str!("sql/load_guardians.sql");
const LOAD_QUIET_HOURS: &str = include_str!("sql/load_quiet_hours.sql");

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
                    school_quiet.row([school.as_str().into(), schedule.as_str().into()]);
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
