//! The write side: applying events to the outbox.

use super::{retention, Channel, NotificationId, NotificationKind, NAME, RETENTION_DAYS};
use crate::bulk::select_in;
use crate::bulk::Cell;
use crate::bulk::{select_packed, Bulk, Packed};
use crate::db::{from_micros, micros, to_i64, uuid};
use crate::error::ProjectionError;
use crate::models::visibility::school_of;
use crate::projection::{fingerprint, Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::activity::{ActivityEvent, ActivityScheduled};
use kring_domain::child::{
    ChildEvent, ConsentDecided, PlannedAbsenceAcknowledged, PlannedAbsenceReported,
};
use kring_domain::consent::{Consents, LatestDecision};
use kring_domain::conversation::{ConversationEvent, ConversationStarted, MessagePosted};
use kring_domain::invitation::{InvitationApproved, InvitationEvent};
use kring_domain::meeting::{MeetingBooked, MeetingEvent, MeetingRoundOpened, MeetingSlot};
use kring_domain::person::{
    first_instant_at, next_digest, EffectivePreferences, NotificationPreferences, PersonEvent,
    QuietHours, SchoolNotificationDefaults, REMINDER_AT,
};
use kring_domain::post::{self, Post, PostEvent, PostPublished};
use kring_domain::school::{self, ConsentPolicy, ConsentPolicyPublished, School, SchoolEvent};
use kring_domain::visibility::who_may_see;
use kring_domain::{ChildId, Event, PersonId, Purpose};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use uuid::Uuid;

/// The projection. It buffers a batch's events, loads the state their messages need with a few
/// IN queries, evolves it in log order in memory and writes the outcome in bulk.
#[derive(Debug, Default)]
pub struct OutboxProjection {
    /// Every event of the batch with its recorded time (the retention window follows the
    /// newest), and what the outbox needs of it.
    buffer: Buffer<(u64, DateTime<Utc>, Option<Needed>)>,
    /// Per generation, the newest recorded time of the log it is catching up to
    /// ([`Projection::log_head`]): what is out of the window there is not written at all.
    heads: Mutex<HashMap<i64, DateTime<Utc>>>,
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
    /// A roster event, applied to the school's roster after what it also means above.
    Roster(Box<SchoolEvent>, Option<Box<Needed>>),
    /// A person's notification preferences (their quiet hours included).
    Preferences(String, NotificationPreferences),
    PostPublished(Box<PostPublished>),
    ConsentDecided(ConsentDecided),
    AbsenceReported(PlannedAbsenceReported),
    /// An acknowledged absence, by the event with this id.
    AbsenceAcknowledged(PlannedAbsenceAcknowledged, Uuid),
    ActivityScheduled(ActivityScheduled),
    /// A volunteer signed up (activity, person), by the event with this id.
    SignedUp(String, String, Uuid),
    /// A volunteer withdrew (activity, person).
    Withdrew(String, String),
    ActivityCancelled(String),
    InvitationApproved(InvitationApproved),
    /// A meeting round opened: its school and slots.
    MeetingRoundOpened(Box<MeetingRoundOpened>),
    /// A slot added to a round (round, slot).
    MeetingSlotAdded(String, MeetingSlot),
    /// A booking made, by the event with this id.
    MeetingBooked(MeetingBooked, Uuid),
    /// A booking moved (round, booking, to slot, by), by the event with this id.
    MeetingMoved(String, String, u32, PersonId, Uuid),
    /// A booking cancelled (round, booking, by), by the event with this id.
    MeetingBookingCancelled(String, String, PersonId, Uuid),
    /// A round cancelled (round, by), by the event with this id.
    MeetingRoundCancelled(String, PersonId, Uuid),
}

impl Needed {
    /// What it means besides a roster change: itself, or what a roster event also means.
    fn inner(&self) -> Option<&Self> {
        match self {
            Self::Roster(_, then) => then.as_deref(),
            other => Some(other),
        }
    }
}

/// The tables. The indexes of notifications by activity and by round, which the projection's
/// own removals of reminders use, are partial (`WHERE … IS NOT NULL`): most notifications (of
/// posts, messages) have neither, and a rebuild would otherwise keep an entry of each of them
/// in order through every insert.
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
const LOAD_ROSTERS: &str = include_str!("sql/load_rosters.sql");
const ROSTERS: &str = include_str!("sql/rosters.sql");
const ROSTERS_SUFFIX: &str = include_str!("sql/rosters_suffix.sql");
const LOAD_PREFERENCES: &str = include_str!("sql/load_preferences.sql");
const PREFERENCES: &str = include_str!("sql/preferences.sql");
const PREFERENCES_SUFFIX: &str = include_str!("sql/preferences_suffix.sql");
const LOAD_CONSENTS: &str = include_str!("sql/load_consents.sql");
const CONSENTS: &str = include_str!("sql/consents.sql");
const CONSENTS_SUFFIX: &str = include_str!("sql/consents_suffix.sql");
const LOAD_ACTIVITIES: &str = include_str!("sql/load_activities.sql");
const ACTIVITIES: &str = include_str!("sql/activities.sql");
const LOAD_CHILD_SCHOOLS: &str = include_str!("sql/load_child_schools.sql");
const REMINDER_WITHDRAWN: &str = include_str!("sql/reminder_withdrawn.sql");
const REMINDERS_CANCELLED: &str = include_str!("sql/reminders_cancelled.sql");
const MEETING_ROUNDS: &str = include_str!("sql/meeting_rounds.sql");
const MEETING_SLOTS: &str = include_str!("sql/meeting_slots.sql");
const MEETING_BOOKINGS: &str = include_str!("sql/meeting_bookings.sql");
const MEETING_BOOKINGS_SUFFIX: &str = include_str!("sql/meeting_bookings_suffix.sql");
const MEETING_BOOKING_CANCELLED: &str = include_str!("sql/meeting_booking_cancelled.sql");
const LOAD_MEETING_ROUNDS: &str = include_str!("sql/load_meeting_rounds.sql");
const LOAD_MEETING_SLOTS: &str = include_str!("sql/load_meeting_slots.sql");
const LOAD_MEETING_BOOKINGS: &str = include_str!("sql/load_meeting_bookings.sql");
const MEETING_REMINDERS_OF_BOOKING: &str = include_str!("sql/meeting_reminders_of_booking.sql");
const MEETING_REMINDERS_OF_ROUND: &str = include_str!("sql/meeting_reminders_of_round.sql");
const LOAD_WINDOW: &str = include_str!("sql/load_window.sql");
const WINDOW: &str = include_str!("sql/window.sql");
const OUT_OF_WINDOW: &str = include_str!("sql/out_of_window.sql");

/// The columns of a notification row (see `sql/notify.sql`).
const NOTIFY_WIDTH: usize = 19;

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
            "outbox_rosters",
            "outbox_preferences",
            "outbox_consents",
            "outbox_activities",
            "outbox_meeting_rounds",
            "outbox_meeting_slots",
            "outbox_meeting_bookings",
            "outbox_window",
        ]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    /// The default's parts and the retention window: another window is another read model.
    fn fingerprint(&self) -> String {
        fingerprint(&[
            self.schema(),
            self.query_indexes(),
            &self.revision().to_string(),
            &format!("retention {RETENTION_DAYS} days"),
        ])
    }

    fn log_head(&self, t: &Tables, occurred_at: DateTime<Utc>) {
        let mut heads = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let head = heads.entry(t.generation()).or_insert(occurred_at);
        *head = (*head).max(occurred_at);
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
            Event::Person(PersonEvent::NotificationPreferencesSet(p)) => Some(Needed::Preferences(
                p.person_id.to_string(),
                p.preferences.clone(),
            )),
            Event::Post(PostEvent::PostPublished(p)) => {
                Some(Needed::PostPublished(Box::new(p.clone())))
            }
            Event::Child(ChildEvent::ConsentDecided(d)) => Some(Needed::ConsentDecided(d.clone())),
            Event::Child(ChildEvent::PlannedAbsenceReported(a)) => {
                Some(Needed::AbsenceReported(a.clone()))
            }
            Event::Child(ChildEvent::PlannedAbsenceAcknowledged(a)) => {
                Some(Needed::AbsenceAcknowledged(a.clone(), e.recorded.event_id))
            }
            Event::Activity(ActivityEvent::ActivityScheduled(a)) => {
                Some(Needed::ActivityScheduled(a.clone()))
            }
            Event::Activity(ActivityEvent::VolunteerSignedUp(v)) => Some(Needed::SignedUp(
                v.activity_id.to_string(),
                v.person_id.to_string(),
                e.recorded.event_id,
            )),
            Event::Activity(ActivityEvent::VolunteerWithdrew(v)) => Some(Needed::Withdrew(
                v.activity_id.to_string(),
                v.person_id.to_string(),
            )),
            Event::Activity(ActivityEvent::ActivityCancelled(a)) => {
                Some(Needed::ActivityCancelled(a.activity_id.to_string()))
            }
            Event::Invitation(InvitationEvent::InvitationApproved(a)) => {
                Some(Needed::InvitationApproved(a.clone()))
            }
            Event::Meeting(m) => meeting_needed(m, e.recorded.event_id),
            _ => None,
        };
        let needed = match e.event {
            Event::School(school_event) => Some(Needed::Roster(
                Box::new(school_event.clone()),
                needed.map(Box::new),
            )),
            _ => needed,
        };
        self.buffer.push(
            t,
            e.recorded.position,
            Some((e.recorded.position, e.recorded.occurred_at, needed)),
        );
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let batch = self.buffer.take(t);
        let Some(newest) = batch.iter().map(|(_, at, _)| *at).max() else {
            return Ok(());
        };
        let told = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&t.generation())
            .copied();
        let keep_from = Window::move_to(tx, t, newest, told).await?;
        let batch: Vec<(u64, DateTime<Utc>, Needed)> = batch
            .into_iter()
            .filter_map(|(position, at, needed)| needed.map(|n| (position, at, n)))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = State::load(tx, t, &batch).await?;
        state.keep_from = keep_from;
        let mut notifications = Notifications {
            rows: Bulk::new(t.sql(NOTIFY), NOTIFY_WIDTH, DO_NOTHING),
            reminders: BTreeMap::new(),
            meeting_reminders: Vec::new(),
        };
        for (position, at, needed) in batch {
            state.evolve(position, at, needed, &mut notifications)?;
            // A batch of posts to whole classes makes tens of thousands of rows: they are
            // written while they are made, a statement at a time, not held for the batch. None
            // of them is a reminder, the only rows the removals below take back.
            notifications.rows.execute_full(tx).await?;
        }
        // Withdrawn or cancelled reminders of earlier batches go first; this batch's own are
        // only written when they still stand.
        let removals = std::mem::take(&mut state.removals);
        state.write(tx, t).await?;
        for (sql, cells) in removals {
            tx.execute(t.sql(sql), cells).await?;
        }
        let mut rows = notifications.rows;
        for (_, row) in notifications.reminders {
            if row.release_at >= keep_from {
                rows.rows(row.cells);
            }
        }
        for row in notifications.meeting_reminders {
            if row.release_at >= keep_from {
                rows.rows(row.cells);
            }
        }
        rows.execute(tx).await?;
        Ok(())
    }
}

/// The retention window of a generation as stored: the newest recorded time applied, and a
/// release time no stored notification is older than.
struct Window;

impl Window {
    /// Moves the window on to `newest` (a batch's newest recorded time) and returns the release
    /// time from which the batch's notifications are written: the window's start, or the start
    /// it will have at `told` (the newest time of the log being caught up to) when later.
    /// Deletes the notifications that fell out of it, when some may have (one statement, on the
    /// index by release time).
    async fn move_to(
        tx: &mut Tx,
        t: &Tables,
        newest: DateTime<Utc>,
        told: Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>, ProjectionError> {
        let stored = tx.fetch_all(t.sql(LOAD_WINDOW), Vec::new()).await?;
        let (head, kept_from) = match stored.first() {
            Some(row) => {
                let head = from_micros(row.try_get(0)?)?;
                let kept_from: i64 = row.try_get(1)?;
                (head.max(newest), kept_from)
            }
            // Nothing stored yet: no notification either.
            None => (newest, i64::MAX),
        };
        let start = head - retention();
        let mut kept_from = kept_from;
        if micros(start) > kept_from {
            tx.execute(&t.sql(OUT_OF_WINDOW), vec![micros(start).into()])
                .await?;
            kept_from = micros(start);
        }
        let write_from = told.map_or(start, |told| start.max(told - retention()));
        kept_from = kept_from.min(micros(write_from));
        tx.execute(&t.sql(WINDOW), vec![micros(head).into(), kept_from.into()])
            .await?;
        Ok(write_from)
    }
}

/// What a meeting event means to the outbox (`None`: nothing, like a blocked slot or a closed
/// round, whose bookings stand).
fn meeting_needed(m: &MeetingEvent, event_id: Uuid) -> Option<Needed> {
    Some(match m {
        MeetingEvent::MeetingRoundOpened(o) => Needed::MeetingRoundOpened(Box::new(o.clone())),
        MeetingEvent::MeetingSlotAdded(a) => {
            Needed::MeetingSlotAdded(a.round_id.to_string(), a.slot.clone())
        }
        MeetingEvent::MeetingBooked(b) => Needed::MeetingBooked(b.clone(), event_id),
        MeetingEvent::MeetingMoved(m) => Needed::MeetingMoved(
            m.round_id.to_string(),
            m.booking_id.to_string(),
            m.to_slot,
            m.by,
            event_id,
        ),
        MeetingEvent::MeetingBookingCancelled(c) => Needed::MeetingBookingCancelled(
            c.round_id.to_string(),
            c.booking_id.to_string(),
            c.by,
            event_id,
        ),
        MeetingEvent::MeetingRoundCancelled(c) => {
            Needed::MeetingRoundCancelled(c.round_id.to_string(), c.by, event_id)
        }
        MeetingEvent::MeetingSlotBlocked(_) | MeetingEvent::MeetingRoundClosed(_) => return None,
    })
}

/// The id a meeting reminder is derived from: the id of the event that booked or moved the
/// conversation, with its last 62 bits inverted — distinct from the id of that event's own
/// notification (`meeting_booked`, `meeting_changed`) to the same person, and the same on every
/// rebuild.
fn reminder_about(event_id: Uuid) -> Uuid {
    Uuid::from_u128(event_id.as_u128() ^ 0x3fff_ffff_ffff_ffff)
}

/// The notifications a batch makes.
struct Notifications {
    rows: Bulk,
    /// The batch's activity reminders, by (activity, volunteer): a withdrawal later in the
    /// batch takes one back before it is written.
    reminders: BTreeMap<(String, String), Reminder>,
    /// The batch's meeting reminders: a move or a cancellation later in the batch takes them
    /// back before they are written.
    meeting_reminders: Vec<MeetingReminder>,
}

/// A meeting reminder not written yet.
struct MeetingReminder {
    round: String,
    booking: String,
    cells: Vec<Cell>,
    release_at: DateTime<Utc>,
}

impl Notifications {
    /// Takes back the batch's meeting reminders of `round` (of its `booking` only, when given)
    /// not released by `at`.
    fn take_back_meeting_reminders(
        &mut self,
        round: &str,
        booking: Option<&str>,
        at: DateTime<Utc>,
    ) {
        self.meeting_reminders.retain(|r| {
            r.round != round || booking.is_some_and(|b| r.booking != b) || r.release_at <= at
        });
    }
}

/// A stored booking: its slot and children.
#[derive(Clone)]
struct StoredBooking {
    slot: u32,
    children: Vec<ChildId>,
}

/// An activity reminder not written yet.
struct Reminder {
    cells: Vec<Cell>,
    release_at: DateTime<Utc>,
}

/// What a notification is about: its kind and ids (never text).
#[derive(Default, Clone)]
struct About {
    /// The kind (`None` only in the default).
    kind: Option<NotificationKind>,
    /// The id its id is derived from.
    id: Uuid,
    school: Option<String>,
    conversation: Option<String>,
    message: Option<String>,
    policy_version: Option<u32>,
    post: Option<String>,
    group: Option<String>,
    activity: Option<String>,
    invitation: Option<String>,
    child: Option<String>,
    absence: Option<String>,
    round: Option<String>,
    booking: Option<String>,
}

fn text(v: Option<&String>) -> Cell {
    v.map_or(Cell::Null, Cell::from)
}

/// A stored activity: what its reminders need.
#[derive(Clone)]
struct StoredActivity {
    school: String,
    group: String,
    starts_at: DateTime<Utc>,
}

/// What one batch reads and changes, in memory.
#[derive(Default)]
struct State {
    /// Each school's roster (the domain's state), for the schools the batch touches.
    rosters: HashMap<String, School>,
    rosters_dirty: BTreeSet<String>,
    /// People's own notification preferences (without quiet hours: see `quiet`).
    preferences: HashMap<String, NotificationPreferences>,
    preferences_dirty: BTreeSet<String>,
    /// The consent of the children the batch's posts show (loaded), and decisions made in it.
    consents: HashMap<String, Consents>,
    consents_dirty: BTreeMap<(String, Purpose, String), LatestDecision>,
    activities: HashMap<String, StoredActivity>,
    activities_dirty: BTreeSet<String>,
    /// Meeting rounds the batch touches: round → school.
    meeting_rounds: HashMap<String, String>,
    meeting_rounds_dirty: BTreeSet<String>,
    /// Their slots' starts.
    meeting_slots: HashMap<(String, u32), DateTime<Utc>>,
    meeting_slots_dirty: BTreeSet<(String, u32)>,
    /// Their live bookings: (round, booking) → slot and children.
    meeting_bookings: BTreeMap<(String, String), StoredBooking>,
    meeting_bookings_dirty: BTreeSet<(String, String)>,
    /// Statements that take back reminders of earlier batches, in log order.
    removals: Vec<(&'static str, Vec<Cell>)>,
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
    /// The release time from which notifications are written: older ones are out of the
    /// retention window (see [`Window::move_to`]).
    keep_from: DateTime<Utc>,
}

/// A slot's number as stored.
fn slot_number(stored: i64) -> Result<u32, ProjectionError> {
    u32::try_from(stored)
        .map_err(|_| ProjectionError::Invalid(format!("slot number {stored} in the outbox")))
}

/// When a reminder of `kind` about something that starts at `starts_at`, made at `at`, is
/// wanted and released, and on which channel, for a recipient with `preferences`: wanted at
/// [`REMINDER_AT`] local time the day before (or at once when made later than that), released
/// then subject to their quiet hours; on the digest channel, in the digest of the day before
/// (or the next one).
fn reminder_times(
    preferences: &EffectivePreferences,
    kind: NotificationKind,
    starts_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>, Channel) {
    let tz = preferences.timezone;
    let day_before = starts_at.with_timezone(&tz).date_naive() - chrono::Duration::days(1);
    let wanted = first_instant_at(tz, day_before.and_time(REMINDER_AT)).max(at);
    let channel = preferences.channel(kind);
    let release_at = match channel {
        Channel::Digest => {
            let digest = first_instant_at(tz, day_before.and_time(preferences.digest_at));
            if digest > at {
                digest
            } else {
                next_digest(at, preferences.digest_at, tz)
            }
        }
        _ => preferences.release_at(kind, wanted),
    };
    (wanted, release_at, channel)
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
            .filter_map(|(_, _, n)| match n.inner() {
                Some(Needed::PolicyPublished(p, _)) => Some(p.school_id.to_string()),
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
        let mut people: BTreeSet<String> = state
            .conversations
            .values()
            .flat_map(|c| c.2.iter().cloned())
            .collect();
        state.load_more(tx, t, batch, &mut people).await?;
        let people: Vec<String> = people.into_iter().collect();
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
        for row in select_in(tx, &t.sql(LOAD_PREFERENCES), &[], &people).await? {
            let person: String = row.try_get(0)?;
            let preferences: String = row.try_get(1)?;
            state
                .preferences
                .insert(person, serde_json::from_str(&preferences)?);
        }
        Ok(state)
    }

    /// Loads what the batch's other kinds need: the activities its volunteers sign up for,
    /// the schools of the children its invitations link, the rosters of every school it
    /// touches and the consent of the children its posts show; adds the people of those
    /// rosters (and the volunteers and invited guardians) to `people`.
    async fn load_more(
        &mut self,
        tx: &mut Tx,
        t: &Tables,
        batch: &[(u64, DateTime<Utc>, Needed)],
        people: &mut BTreeSet<String>,
    ) -> Result<(), ProjectionError> {
        let mut schools: BTreeSet<String> =
            self.conversations.values().map(|c| c.0.clone()).collect();
        let mut activities = BTreeSet::new();
        let mut scheduled = BTreeSet::new();
        let mut children = BTreeSet::new();
        let mut tagged = BTreeSet::new();
        for (_, _, needed) in batch {
            match needed {
                Needed::Roster(e, _) => {
                    schools.insert(school_of(e).to_string());
                }
                Needed::PostPublished(p) => {
                    schools.insert(p.school_id.to_string());
                    for m in &p.media {
                        tagged.extend(m.tagged_children.iter().map(ToString::to_string));
                    }
                }
                Needed::AbsenceReported(a) => {
                    schools.insert(a.school_id.to_string());
                }
                Needed::AbsenceAcknowledged(a, _) => {
                    schools.insert(a.school_id.to_string());
                    people.insert(a.reported_by.to_string());
                }
                Needed::ActivityScheduled(a) => {
                    schools.insert(a.school_id.to_string());
                    scheduled.insert(a.activity_id.to_string());
                }
                Needed::SignedUp(activity, person, _) | Needed::Withdrew(activity, person) => {
                    people.insert(person.clone());
                    if !scheduled.contains(activity) {
                        activities.insert(activity.clone());
                    }
                }
                Needed::ActivityCancelled(activity) if !scheduled.contains(activity) => {
                    activities.insert(activity.clone());
                }
                Needed::InvitationApproved(a) => {
                    people.insert(a.guardian_id.to_string());
                    children.insert(a.child_id.to_string());
                }
                _ => {}
            }
        }
        let activities: Vec<String> = activities.into_iter().collect();
        for row in select_in(tx, &t.sql(LOAD_ACTIVITIES), &[], &activities).await? {
            let activity = StoredActivity {
                school: row.try_get(1)?,
                group: row.try_get(2)?,
                starts_at: crate::db::from_micros(row.try_get(3)?)?,
            };
            schools.insert(activity.school.clone());
            self.activities.insert(row.try_get(0)?, activity);
        }
        let children: Vec<String> = children
            .into_iter()
            .filter(|c| !self.child_school.contains_key(c))
            .collect();
        for row in select_in(tx, &t.sql(LOAD_CHILD_SCHOOLS), &[], &children).await? {
            let (child, school): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            schools.insert(school.clone());
            self.child_school.insert(child, school);
        }
        self.load_meetings(tx, t, batch, &mut schools).await?;
        // Schools enrolling the children in this batch: known from their events.
        let schools: Vec<String> = schools.into_iter().collect();
        for row in select_in(tx, &t.sql(LOAD_ROSTERS), &[], &schools).await? {
            let school: String = row.try_get(0)?;
            let roster: String = row.try_get(1)?;
            self.rosters.insert(school, serde_json::from_str(&roster)?);
        }
        for roster in self.rosters.values() {
            people.extend(roster.staff.keys().map(ToString::to_string));
            for enrolment in roster.children.values() {
                people.extend(enrolment.guardians.iter().map(ToString::to_string));
            }
        }
        // People who join a roster in this batch.
        for (_, _, needed) in batch {
            if let Needed::Roster(_, Some(then)) = needed {
                match then.as_ref() {
                    Needed::StaffJoined(_, person) | Needed::GuardianLinked(_, person) => {
                        people.insert(person.clone());
                    }
                    _ => {}
                }
            }
        }
        let tagged: Vec<String> = tagged.into_iter().collect();
        for row in select_in(tx, &t.sql(LOAD_CONSENTS), &[], &tagged).await? {
            let child: String = row.try_get(0)?;
            let purpose: String = row.try_get(1)?;
            let guardian: String = row.try_get(2)?;
            let decision: String = row.try_get(3)?;
            let purpose: Purpose =
                purpose
                    .parse()
                    .map_err(|e: kring_domain::purpose::UnknownPurpose| {
                        ProjectionError::Invalid(e.to_string())
                    })?;
            self.consents.entry(child).or_default().record(
                purpose,
                PersonId::from_uuid(uuid(&guardian)?),
                serde_json::from_str(&decision)?,
            );
        }
        Ok(())
    }

    /// Loads the rounds the batch's meeting events are about (but those it opens), with their
    /// slots and live bookings; adds their schools to `schools`.
    async fn load_meetings(
        &mut self,
        tx: &mut Tx,
        t: &Tables,
        batch: &[(u64, DateTime<Utc>, Needed)],
        schools: &mut BTreeSet<String>,
    ) -> Result<(), ProjectionError> {
        let mut opened = BTreeSet::new();
        let mut rounds = BTreeSet::new();
        for (_, _, needed) in batch {
            match needed {
                Needed::MeetingRoundOpened(o) => {
                    opened.insert(o.round_id.to_string());
                    schools.insert(o.school_id.to_string());
                }
                Needed::MeetingSlotAdded(round, _)
                | Needed::MeetingMoved(round, ..)
                | Needed::MeetingBookingCancelled(round, ..)
                | Needed::MeetingRoundCancelled(round, ..) => {
                    rounds.insert(round.clone());
                }
                Needed::MeetingBooked(b, _) => {
                    rounds.insert(b.round_id.to_string());
                }
                _ => {}
            }
        }
        let rounds: Vec<String> = rounds.difference(&opened).cloned().collect();
        if rounds.is_empty() {
            return Ok(());
        }
        for row in select_in(tx, &t.sql(LOAD_MEETING_ROUNDS), &[], &rounds).await? {
            let (round, school): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            schools.insert(school.clone());
            self.meeting_rounds.insert(round, school);
        }
        for row in select_in(tx, &t.sql(LOAD_MEETING_SLOTS), &[], &rounds).await? {
            let round: String = row.try_get(0)?;
            let slot = slot_number(row.try_get(1)?)?;
            let starts_at = crate::db::from_micros(row.try_get(2)?)?;
            self.meeting_slots.insert((round, slot), starts_at);
        }
        for row in select_in(tx, &t.sql(LOAD_MEETING_BOOKINGS), &[], &rounds).await? {
            let round: String = row.try_get(0)?;
            let booking: String = row.try_get(1)?;
            let slot = slot_number(row.try_get(2)?)?;
            let children: Vec<ChildId> = serde_json::from_str(&row.try_get::<String, _>(3)?)?;
            self.meeting_bookings
                .insert((round, booking), StoredBooking { slot, children });
        }
        Ok(())
    }

    fn evolve(
        &mut self,
        position: u64,
        occurred_at: DateTime<Utc>,
        needed: Needed,
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        match needed {
            Needed::Roster(event, then) => {
                if let Some(then) = then {
                    self.evolve(position, occurred_at, *then, notifications)?;
                }
                let school = school_of(&event).to_string();
                let roster = self.rosters.remove(&school).unwrap_or_default();
                self.rosters
                    .insert(school.clone(), school::evolve(roster, &event));
                self.rosters_dirty.insert(school);
            }
            Needed::Preferences(person, preferences) => {
                match &preferences.quiet_hours {
                    Some(quiet) => {
                        self.quiet.insert(
                            person.clone(),
                            Some((serde_json::to_string(quiet)?, micros(occurred_at))),
                        );
                    }
                    None => {
                        self.quiet.insert(person.clone(), None);
                    }
                }
                self.quiet_dirty.insert(person.clone());
                let mut own = preferences;
                own.quiet_hours = None;
                self.preferences.insert(person.clone(), own);
                self.preferences_dirty.insert(person);
            }
            Needed::ConsentDecided(d) => {
                let child = d.child_id.to_string();
                let guardian = d.guardian_id.to_string();
                self.consents.entry(child.clone()).or_default().record(
                    d.purpose,
                    d.guardian_id,
                    (&d).into(),
                );
                self.consents_dirty
                    .insert((child, d.purpose, guardian), (&d).into());
            }
            Needed::PostPublished(p) => self.post(&p, position, notifications)?,
            Needed::AbsenceReported(a) => {
                self.absence_reported(&a, position, occurred_at, notifications)?;
            }
            Needed::ActivityScheduled(a) => {
                let id = a.activity_id.to_string();
                self.activities.insert(
                    id.clone(),
                    StoredActivity {
                        school: a.school_id.to_string(),
                        group: a.group_id.to_string(),
                        starts_at: a.starts_at,
                    },
                );
                self.activities_dirty.insert(id);
                self.activity_created(&a, position, occurred_at, notifications)?;
            }
            Needed::SignedUp(activity, person, event_id) => {
                self.signed_up(
                    &activity,
                    &person,
                    event_id,
                    position,
                    occurred_at,
                    notifications,
                )?;
            }
            Needed::Withdrew(activity, person) => {
                let key = (activity.clone(), person.clone());
                match notifications.reminders.get(&key) {
                    Some(r) if r.release_at > occurred_at => {
                        notifications.reminders.remove(&key);
                    }
                    Some(_) => {}
                    None => self.removals.push((
                        REMINDER_WITHDRAWN,
                        vec![activity.into(), person.into(), micros(occurred_at).into()],
                    )),
                }
            }
            Needed::ActivityCancelled(activity) => {
                notifications
                    .reminders
                    .retain(|(a, _), r| *a != activity || r.release_at <= occurred_at);
                self.removals.push((
                    REMINDERS_CANCELLED,
                    vec![activity.into(), micros(occurred_at).into()],
                ));
            }
            Needed::AbsenceAcknowledged(a, event_id) => {
                let about = About {
                    kind: Some(NotificationKind::AbsenceAcknowledged),
                    id: event_id,
                    school: Some(a.school_id.to_string()),
                    child: Some(a.child_id.to_string()),
                    absence: Some(a.absence_id.to_string()),
                    ..About::default()
                };
                let guardian = a.reported_by.to_string();
                self.emit(&mut notifications.rows, position, &guardian, &about, a.at)?;
            }
            Needed::InvitationApproved(a) => {
                let about = About {
                    kind: Some(NotificationKind::InvitationApproved),
                    id: a.invitation_id.as_uuid(),
                    school: self.child_school.get(&a.child_id.to_string()).cloned(),
                    invitation: Some(a.invitation_id.to_string()),
                    child: Some(a.child_id.to_string()),
                    ..About::default()
                };
                let guardian = a.guardian_id.to_string();
                self.emit(
                    &mut notifications.rows,
                    position,
                    &guardian,
                    &about,
                    occurred_at,
                )?;
            }
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
                self.consent_needed(&p, event_id, position, occurred_at, &mut notifications.rows)?;
            }
            Needed::SchoolQuietHours(school, schedule) => {
                self.school_quiet.insert(school.clone(), schedule);
                self.school_quiet_dirty.insert(school);
            }
            Needed::MeetingRoundOpened(o) => {
                let round = o.round_id.to_string();
                self.meeting_rounds
                    .insert(round.clone(), o.school_id.to_string());
                self.meeting_rounds_dirty.insert(round.clone());
                for slot in &o.slots {
                    self.slot_added(&round, slot);
                }
            }
            Needed::MeetingSlotAdded(round, slot) => self.slot_added(&round, &slot),
            Needed::MeetingBooked(b, event_id) => {
                self.meeting_booked(&b, event_id, position, occurred_at, notifications)?;
            }
            Needed::MeetingMoved(round, booking, to_slot, by, event_id) => {
                self.meeting_moved(
                    &round,
                    &booking,
                    to_slot,
                    by,
                    event_id,
                    (position, occurred_at),
                    notifications,
                )?;
            }
            Needed::MeetingBookingCancelled(round, booking, by, event_id) => {
                notifications.take_back_meeting_reminders(&round, Some(&booking), occurred_at);
                self.removals.push((
                    MEETING_REMINDERS_OF_BOOKING,
                    vec![
                        round.as_str().into(),
                        booking.as_str().into(),
                        micros(occurred_at).into(),
                    ],
                ));
                let key = (round, booking);
                if let Some(stored) = self.meeting_bookings.remove(&key) {
                    self.meeting_bookings_dirty.insert(key.clone());
                    let about = About {
                        kind: Some(NotificationKind::MeetingChanged),
                        id: event_id,
                        booking: Some(key.1.clone()),
                        ..About::default()
                    };
                    self.tell_family(
                        &key.0,
                        &stored.children,
                        Some(by),
                        &about,
                        position,
                        occurred_at,
                        &mut notifications.rows,
                    )?;
                }
            }
            Needed::MeetingRoundCancelled(round, by, event_id) => {
                notifications.take_back_meeting_reminders(&round, None, occurred_at);
                self.removals.push((
                    MEETING_REMINDERS_OF_ROUND,
                    vec![round.as_str().into(), micros(occurred_at).into()],
                ));
                let keys: Vec<(String, String)> = self
                    .meeting_bookings
                    .keys()
                    .filter(|(r, _)| *r == round)
                    .cloned()
                    .collect();
                let mut children = Vec::new();
                for key in keys {
                    if let Some(stored) = self.meeting_bookings.remove(&key) {
                        children.extend(stored.children);
                    }
                    self.meeting_bookings_dirty.insert(key);
                }
                // One notification per guardian, whatever the number of their bookings.
                let about = About {
                    kind: Some(NotificationKind::MeetingChanged),
                    id: event_id,
                    ..About::default()
                };
                self.tell_family(
                    &round,
                    &children,
                    Some(by),
                    &about,
                    position,
                    occurred_at,
                    &mut notifications.rows,
                )?;
            }
            // Loaded (with its participants) in `load`.
            Needed::Started(_) => {}
            Needed::Posted(m) => self.notify(&m, position, &mut notifications.rows)?,
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
            let about = About {
                kind: Some(NotificationKind::Message),
                id: m.message_id.as_uuid(),
                school: Some(school.clone()),
                conversation: Some(conversation.clone()),
                message: Some(m.message_id.to_string()),
                child: Some(child.clone()),
                ..About::default()
            };
            self.emit(notifications, position, recipient, &about, m.at)?;
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
        let about = About {
            kind: Some(NotificationKind::ConsentNeeded),
            id: event_id,
            school: Some(school.clone()),
            policy_version: Some(p.version),
            ..About::default()
        };
        for recipient in recipients {
            self.emit(notifications, position, recipient, &about, at)?;
        }
        Ok(())
    }

    /// The preferences of `recipient` for a notification of `school` (whose defaults fill in
    /// what they did not choose), as of now in the log.
    fn preferences_of(
        &self,
        recipient: &str,
        school: Option<&String>,
    ) -> Result<EffectivePreferences, ProjectionError> {
        let quiet: Option<QuietHours> = self
            .quiet
            .get(recipient)
            .and_then(Option::as_ref)
            .map(|(schedule, _)| serde_json::from_str(schedule))
            .transpose()?;
        let roster = school.and_then(|s| self.rosters.get(s));
        let person = PersonId::from_uuid(uuid(recipient)?);
        let staff = roster.is_some_and(|r| r.staff.contains_key(&person));
        Ok(EffectivePreferences::resolve(
            self.preferences.get(recipient),
            quiet.as_ref(),
            roster.map(|r| SchoolNotificationDefaults::of(&r.settings)),
            staff,
        ))
    }

    /// One notification about `about` to `recipient`, for something that happened at `at`:
    /// its channel and release time by the recipient's preferences.
    fn emit(
        &self,
        rows: &mut Bulk,
        position: u64,
        recipient: &str,
        about: &About,
        at: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        let kind = about
            .kind
            .ok_or_else(|| ProjectionError::Invalid("a notification without a kind".into()))?;
        let preferences = self.preferences_of(recipient, about.school.as_ref())?;
        let release_at = preferences.release_at(kind, at);
        if release_at < self.keep_from {
            // Out of the retention window already.
            return Ok(());
        }
        rows.rows(cells(
            about,
            position,
            recipient,
            at,
            release_at,
            preferences.channel(kind),
        )?);
        Ok(())
    }

    /// The notifications of a new post: the audience's staff but its author, and each guardian
    /// in its audience the post shows something: its text, or a media item they may see (the
    /// feed's rule, [`who_may_see`], as of the post's event).
    fn post(
        &self,
        p: &PostPublished,
        position: u64,
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        let school = p.school_id.to_string();
        let Some(roster) = self.rosters.get(&school) else {
            return Ok(());
        };
        let state = post::evolve(Post::default(), &PostEvent::PostPublished(p.clone()));
        let consent = |child: kring_domain::ChildId, purpose: Purpose, from: u32| {
            self.consents
                .get(&child.to_string())
                .is_some_and(|c| c.is_effective(purpose, from))
        };
        let visible = p
            .media
            .iter()
            .map(|m| who_may_see(roster, &state, m.media_id, &consent))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProjectionError::Invalid(e.to_string()))?;
        let has_body = p.has_body.unwrap_or(true);
        let staff = roster.audience_staff(p.group_id);
        let mut recipients: BTreeSet<PersonId> = staff
            .iter()
            .copied()
            .filter(|s| *s != p.author_id)
            .collect();
        for guardian in roster.audience_guardians(p.group_id).into_keys() {
            if staff.contains(&guardian) {
                continue;
            }
            if has_body || visible.iter().any(|v| v.may_see(guardian)) {
                recipients.insert(guardian);
            }
        }
        let about = About {
            kind: Some(NotificationKind::Post),
            id: p.post_id.as_uuid(),
            school: Some(school.clone()),
            post: Some(p.post_id.to_string()),
            group: Some(p.group_id.to_string()),
            ..About::default()
        };
        for recipient in recipients {
            self.emit(
                &mut notifications.rows,
                position,
                &recipient.to_string(),
                &about,
                p.at,
            )?;
        }
        Ok(())
    }

    /// The notifications of a reported absence: the staff assigned to the child's group.
    fn absence_reported(
        &self,
        a: &PlannedAbsenceReported,
        position: u64,
        at: DateTime<Utc>,
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        let school = a.school_id.to_string();
        let Some(roster) = self.rosters.get(&school) else {
            return Ok(());
        };
        let Some(group) = roster.groups.get(&a.group_id) else {
            return Ok(());
        };
        let about = About {
            kind: Some(NotificationKind::AbsenceReported),
            id: a.absence_id.as_uuid(),
            school: Some(school.clone()),
            group: Some(a.group_id.to_string()),
            child: Some(a.child_id.to_string()),
            absence: Some(a.absence_id.to_string()),
            ..About::default()
        };
        for staff in group.staff.iter().filter(|p| roster.staff.contains_key(p)) {
            if *staff == a.reported_by {
                continue;
            }
            self.emit(
                &mut notifications.rows,
                position,
                &staff.to_string(),
                &about,
                at,
            )?;
        }
        Ok(())
    }

    /// The notifications of a new activity: the guardians in its group's audience.
    fn activity_created(
        &self,
        a: &ActivityScheduled,
        position: u64,
        at: DateTime<Utc>,
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        let school = a.school_id.to_string();
        let Some(roster) = self.rosters.get(&school) else {
            return Ok(());
        };
        let staff = roster.audience_staff(a.group_id);
        let about = About {
            kind: Some(NotificationKind::ActivityCreated),
            id: a.activity_id.as_uuid(),
            school: Some(school.clone()),
            group: Some(a.group_id.to_string()),
            activity: Some(a.activity_id.to_string()),
            ..About::default()
        };
        for guardian in roster.audience_guardians(a.group_id).into_keys() {
            if staff.contains(&guardian) {
                continue;
            }
            self.emit(
                &mut notifications.rows,
                position,
                &guardian.to_string(),
                &about,
                at,
            )?;
        }
        Ok(())
    }

    /// A volunteer's reminder: released at 18:00 local time the day before the activity (or
    /// at once when they sign up later than that), subject to their quiet hours; on the digest
    /// channel, in the digest of the day before (or the next one). None once it started.
    fn signed_up(
        &self,
        activity: &str,
        person: &str,
        event_id: Uuid,
        position: u64,
        at: DateTime<Utc>,
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        let Some(stored) = self.activities.get(activity) else {
            return Ok(());
        };
        if at >= stored.starts_at {
            return Ok(());
        }
        let preferences = self.preferences_of(person, Some(&stored.school))?;
        let kind = NotificationKind::ActivityReminder;
        let (wanted, release_at, channel) =
            reminder_times(&preferences, kind, stored.starts_at, at);
        let about = About {
            kind: Some(kind),
            id: event_id,
            school: Some(stored.school.clone()),
            group: Some(stored.group.clone()),
            activity: Some(activity.to_owned()),
            ..About::default()
        };
        notifications.reminders.insert(
            (activity.to_owned(), person.to_owned()),
            Reminder {
                cells: cells(&about, position, person, wanted, release_at, channel)?,
                release_at,
            },
        );
        Ok(())
    }

    fn slot_added(&mut self, round: &str, slot: &MeetingSlot) {
        let key = (round.to_owned(), slot.slot);
        self.meeting_slots.insert(key.clone(), slot.starts_at);
        self.meeting_slots_dirty.insert(key);
    }

    /// The guardians of `children` as of now in the log, each with the first of those children
    /// they are a guardian of (the notification names it, and delivery checks the guardianship
    /// still holds when it sends).
    fn family(&self, school: &str, children: &[ChildId]) -> BTreeMap<PersonId, ChildId> {
        let mut family = BTreeMap::new();
        let Some(roster) = self.rosters.get(school) else {
            return family;
        };
        for child in children {
            if let Some(enrolment) = roster.children.get(child) {
                for guardian in &enrolment.guardians {
                    family.entry(*guardian).or_insert(*child);
                }
            }
        }
        family
    }

    /// Tells the family of `children` (in `round`) of `about`, but `except` (who did it).
    #[allow(clippy::too_many_arguments)]
    fn tell_family(
        &self,
        round: &str,
        children: &[ChildId],
        except: Option<PersonId>,
        about: &About,
        position: u64,
        at: DateTime<Utc>,
        rows: &mut Bulk,
    ) -> Result<(), ProjectionError> {
        let Some(school) = self.meeting_rounds.get(round) else {
            return Ok(());
        };
        for (guardian, child) in self.family(school, children) {
            if Some(guardian) == except {
                continue;
            }
            let about = About {
                school: Some(school.clone()),
                round: Some(round.to_owned()),
                child: Some(child.to_string()),
                ..about.clone()
            };
            self.emit(rows, position, &guardian.to_string(), &about, at)?;
        }
        Ok(())
    }

    /// A booking made (by a guardian, or assigned by staff): the family but who booked is told,
    /// and every guardian of its children reminded the day before.
    fn meeting_booked(
        &mut self,
        b: &MeetingBooked,
        event_id: Uuid,
        position: u64,
        at: DateTime<Utc>,
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        let key = (b.round_id.to_string(), b.booking_id.to_string());
        self.meeting_bookings.insert(
            key.clone(),
            StoredBooking {
                slot: b.slot,
                children: b.child_ids.clone(),
            },
        );
        self.meeting_bookings_dirty.insert(key.clone());
        let about = About {
            kind: Some(NotificationKind::MeetingBooked),
            id: event_id,
            booking: Some(key.1.clone()),
            ..About::default()
        };
        self.tell_family(
            &key.0,
            &b.child_ids,
            Some(b.by),
            &about,
            position,
            at,
            &mut notifications.rows,
        )?;
        self.remind_family(&key.0, &key.1, event_id, position, at, notifications)
    }

    /// A booking moved: its reminders not yet released are taken back, the family but who moved
    /// it is told, and reminded of the new slot.
    #[allow(clippy::too_many_arguments)]
    fn meeting_moved(
        &mut self,
        round: &str,
        booking: &str,
        to_slot: u32,
        by: PersonId,
        event_id: Uuid,
        (position, at): (u64, DateTime<Utc>),
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        notifications.take_back_meeting_reminders(round, Some(booking), at);
        self.removals.push((
            MEETING_REMINDERS_OF_BOOKING,
            vec![round.into(), booking.into(), micros(at).into()],
        ));
        let key = (round.to_owned(), booking.to_owned());
        let Some(stored) = self.meeting_bookings.get_mut(&key) else {
            return Ok(());
        };
        stored.slot = to_slot;
        let children = stored.children.clone();
        self.meeting_bookings_dirty.insert(key);
        let about = About {
            kind: Some(NotificationKind::MeetingChanged),
            id: event_id,
            booking: Some(booking.to_owned()),
            ..About::default()
        };
        self.tell_family(
            round,
            &children,
            Some(by),
            &about,
            position,
            at,
            &mut notifications.rows,
        )?;
        self.remind_family(round, booking, event_id, position, at, notifications)
    }

    /// The reminders of a booking as of the event `event_id` (its booking or its move), to every
    /// guardian of its children: the day before its slot ([`reminder_times`]); none once the
    /// slot started.
    fn remind_family(
        &self,
        round: &str,
        booking: &str,
        event_id: Uuid,
        position: u64,
        at: DateTime<Utc>,
        notifications: &mut Notifications,
    ) -> Result<(), ProjectionError> {
        let key = (round.to_owned(), booking.to_owned());
        let (Some(stored), Some(school)) = (
            self.meeting_bookings.get(&key),
            self.meeting_rounds.get(round),
        ) else {
            return Ok(());
        };
        let Some(starts_at) = self
            .meeting_slots
            .get(&(key.0.clone(), stored.slot))
            .copied()
        else {
            return Ok(());
        };
        if at >= starts_at {
            return Ok(());
        }
        let kind = NotificationKind::MeetingReminder;
        for (guardian, child) in self.family(school, &stored.children) {
            let recipient = guardian.to_string();
            let preferences = self.preferences_of(&recipient, Some(school))?;
            let (wanted, release_at, channel) = reminder_times(&preferences, kind, starts_at, at);
            let about = About {
                kind: Some(kind),
                id: reminder_about(event_id),
                school: Some(school.clone()),
                round: Some(key.0.clone()),
                booking: Some(key.1.clone()),
                child: Some(child.to_string()),
                ..About::default()
            };
            notifications.meeting_reminders.push(MeetingReminder {
                round: key.0.clone(),
                booking: key.1.clone(),
                cells: cells(&about, position, &recipient, wanted, release_at, channel)?,
                release_at,
            });
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
        write_pairs(tx, t, &self.staff_dirty, &self.staff, STAFF, STAFF_LEFT).await?;
        write_pairs(
            tx,
            t,
            &self.guardians_dirty,
            &self.guardians,
            GUARDIANS,
            GUARDIAN_UNLINKED,
        )
        .await?;
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
        let mut rosters = Bulk::new(t.sql(ROSTERS), 2, ROSTERS_SUFFIX);
        for school in &self.rosters_dirty {
            if let Some(roster) = self.rosters.get(school) {
                rosters.row([
                    school.as_str().into(),
                    serde_json::to_string(roster)?.into(),
                ]);
            }
        }
        rosters.execute(tx).await?;
        let mut preferences = Bulk::new(t.sql(PREFERENCES), 2, PREFERENCES_SUFFIX);
        for person in &self.preferences_dirty {
            if let Some(p) = self.preferences.get(person) {
                preferences.row([person.as_str().into(), serde_json::to_string(p)?.into()]);
            }
        }
        preferences.execute(tx).await?;
        let mut consents = Bulk::new(t.sql(CONSENTS), 4, CONSENTS_SUFFIX);
        for ((child, purpose, guardian), decision) in &self.consents_dirty {
            consents.row([
                child.as_str().into(),
                purpose.as_str().into(),
                guardian.as_str().into(),
                serde_json::to_string(decision)?.into(),
            ]);
        }
        consents.execute(tx).await?;
        let mut activities = Bulk::new(t.sql(ACTIVITIES), 4, DO_NOTHING);
        for id in &self.activities_dirty {
            if let Some(a) = self.activities.get(id) {
                activities.row([
                    id.as_str().into(),
                    a.school.as_str().into(),
                    a.group.as_str().into(),
                    micros(a.starts_at).into(),
                ]);
            }
        }
        activities.execute(tx).await?;
        let mut rounds = Bulk::new(t.sql(MEETING_ROUNDS), 2, DO_NOTHING);
        for round in &self.meeting_rounds_dirty {
            if let Some(school) = self.meeting_rounds.get(round) {
                rounds.row([round.as_str().into(), school.as_str().into()]);
            }
        }
        rounds.execute(tx).await?;
        let mut slots = Bulk::new(t.sql(MEETING_SLOTS), 3, DO_NOTHING);
        for key in &self.meeting_slots_dirty {
            if let Some(starts_at) = self.meeting_slots.get(key) {
                slots.row([
                    key.0.as_str().into(),
                    i64::from(key.1).into(),
                    micros(*starts_at).into(),
                ]);
            }
        }
        slots.execute(tx).await?;
        let mut bookings = Bulk::new(t.sql(MEETING_BOOKINGS), 4, MEETING_BOOKINGS_SUFFIX);
        for key in &self.meeting_bookings_dirty {
            match self.meeting_bookings.get(key) {
                Some(b) => bookings.row([
                    key.0.as_str().into(),
                    key.1.as_str().into(),
                    i64::from(b.slot).into(),
                    serde_json::to_string(&b.children)?.into(),
                ]),
                None => {
                    tx.execute(
                        &t.sql(MEETING_BOOKING_CANCELLED),
                        vec![Cell::from(&key.0), Cell::from(&key.1)],
                    )
                    .await?;
                }
            }
        }
        bookings.execute(tx).await?;
        Ok(())
    }
}

/// Writes the changed `dirty` pairs of a relation (a school's staff, a child's guardians): those
/// still in `now` in bulk with `insert`, the others removed one statement each with `remove`
/// (removals are rare).
async fn write_pairs(
    tx: &mut Tx,
    t: &Tables,
    dirty: &BTreeSet<(String, String)>,
    now: &HashSet<(String, String)>,
    insert: &'static str,
    remove: &'static str,
) -> Result<(), ProjectionError> {
    let mut rows = Bulk::new(t.sql(insert), 2, DO_NOTHING);
    for key in dirty {
        if now.contains(key) {
            rows.row([key.0.as_str().into(), key.1.as_str().into()]);
        } else {
            tx.execute(&t.sql(remove), vec![Cell::from(&key.0), Cell::from(&key.1)])
                .await?;
        }
    }
    rows.execute(tx).await
}

/// The cells of one notification row, in the order of `sql/notify.sql`.
fn cells(
    about: &About,
    position: u64,
    recipient: &str,
    created_at: DateTime<Utc>,
    release_at: DateTime<Utc>,
    channel: Channel,
) -> Result<Vec<Cell>, ProjectionError> {
    let kind = about
        .kind
        .ok_or_else(|| ProjectionError::Invalid("a notification without a kind".into()))?;
    let id = NotificationId {
        about: about.id,
        recipient_id: PersonId::from_uuid(uuid(recipient)?),
    };
    Ok(vec![
        id.to_string().into(),
        to_i64(position).into(),
        recipient.into(),
        kind.as_str().into(),
        text(about.conversation.as_ref()),
        text(about.message.as_ref()),
        text(about.school.as_ref()),
        about
            .policy_version
            .map_or(Cell::NullInt, |v| i64::from(v).into()),
        micros(created_at).into(),
        micros(release_at).into(),
        channel.as_str().into(),
        text(about.post.as_ref()),
        text(about.group.as_ref()),
        text(about.activity.as_ref()),
        text(about.invitation.as_ref()),
        text(about.child.as_ref()),
        text(about.absence.as_ref()),
        text(about.round.as_ref()),
        text(about.booking.as_ref()),
    ])
}
