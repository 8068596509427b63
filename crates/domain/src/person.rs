//! A person's own facts: staff quiet hours ("stiltemodus"), erasure requests, and what they
//! read (read receipts: ids only, kept with the person so that export and erasure cover them).

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{MessageId, PersonId, PostId};
use crate::push::{PushEndpoint, PushSubscribed, PushSubscriptionExpired, PushUnsubscribed};
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A day of the week, as written in a quiet-hours schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl From<Weekday> for Day {
    fn from(day: Weekday) -> Self {
        match day {
            Weekday::Mon => Self::Monday,
            Weekday::Tue => Self::Tuesday,
            Weekday::Wed => Self::Wednesday,
            Weekday::Thu => Self::Thursday,
            Weekday::Fri => Self::Friday,
            Weekday::Sat => Self::Saturday,
            Weekday::Sun => Self::Sunday,
        }
    }
}

/// One quiet period: on `day` from `start` to `end` local time; an `end` at or before `start`
/// runs past midnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietPeriod {
    /// The day it starts on.
    pub day: Day,
    /// Local start time.
    pub start: NaiveTime,
    /// Local end time.
    pub end: NaiveTime,
}

/// A staff member's weekly quiet hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// IANA time zone, e.g. `Europe/Amsterdam`.
    pub timezone: String,
    /// The weekly periods.
    pub weekly: Vec<QuietPeriod>,
}

impl QuietHours {
    fn tz(&self) -> Option<chrono_tz::Tz> {
        chrono_tz::Tz::from_str(&self.timezone).ok()
    }

    /// When the quiet period that covers `now` ends, or `None` when `now` is not quiet.
    /// Back-to-back periods (Monday 18:00–24:00, Tuesday 00:00–07:00) count as one.
    #[must_use]
    pub fn quiet_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.tz()?;
        let mut until = self.period_end(tz, now)?;
        // Follow chained periods; a week of them is the most that can chain.
        for _ in 0..14 {
            match self.period_end(tz, until) {
                Some(next) if next > until => until = next,
                _ => break,
            }
        }
        Some(until)
    }

    /// The end of a period covering `at`, if any.
    fn period_end(&self, tz: chrono_tz::Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&tz);
        let today = local.date_naive();
        let mut best: Option<DateTime<Utc>> = None;
        // A period that started yesterday may still run (it crossed midnight).
        for start_day in [today - Duration::days(1), today] {
            for period in self
                .weekly
                .iter()
                .filter(|p| p.day == Day::from(start_day.weekday()))
            {
                let end_day = if period.end <= period.start {
                    start_day + Duration::days(1)
                } else {
                    start_day
                };
                let (Some(start), Some(end)) = (
                    resolve(tz, start_day.and_time(period.start)),
                    resolve(tz, end_day.and_time(period.end)),
                ) else {
                    continue;
                };
                if start <= at && at < end && best.is_none_or(|b| end > b) {
                    best = Some(end);
                }
            }
        }
        best
    }

    /// Checks the time zone and the periods.
    ///
    /// # Errors
    /// `Invalid` for an unknown time zone, too many periods or an empty one.
    pub fn validate(self) -> Result<Self, DomainError> {
        if self.tz().is_none() {
            return Err(DomainError::invalid(
                "timezone",
                format!(
                    "{:?} is not an IANA time zone such as Europe/Amsterdam",
                    self.timezone
                ),
            ));
        }
        if self.weekly.len() > 28 {
            return Err(DomainError::invalid("weekly", "at most 28 periods"));
        }
        if self.weekly.iter().any(|p| p.start == p.end) {
            return Err(DomainError::invalid(
                "weekly",
                "a period must not start and end at the same time",
            ));
        }
        Ok(self)
    }
}

/// A local time as UTC; in a DST gap, the first instant after it.
fn resolve(tz: chrono_tz::Tz, local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => tz
            .from_local_datetime(&(local + Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// How a person is told of a notification of some kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A push message to the person's devices, as soon as it is released.
    Push,
    /// An e-mail, as soon as it is released.
    Email,
    /// Gathered into one daily message at the person's digest time.
    Digest,
    /// Never sent by any channel (still listed in the person's own app).
    Off,
}

impl Channel {
    /// Every channel, in order.
    pub const ALL: [Self; 4] = [Self::Push, Self::Email, Self::Digest, Self::Off];

    /// The stored (and API) name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Email => "email",
            Self::Digest => "digest",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel name that Kring does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown notification channel {0:?}; known channels: push, email, digest, off")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A new post in a group (or the whole school) the recipient may see something of.
    Post,
    /// A message was posted in a conversation the recipient takes part in.
    Message,
    /// An activity was scheduled in a group of the recipient's child.
    ActivityCreated,
    /// Tomorrow is an activity the recipient volunteers for.
    ActivityReminder,
    /// The recipient's invitation was approved: they are now a guardian of the child.
    InvitationApproved,
    /// A new consent-policy version asks the recipient, a guardian, to decide again.
    ConsentNeeded,
    /// Staff acknowledged a planned absence the recipient reported.
    AbsenceAcknowledged,
    /// A guardian reported a planned absence of a child of the recipient's group (staff).
    AbsenceReported,
    /// A parent–teacher conversation was booked for the recipient's child: by the other
    /// guardian, or assigned by staff.
    MeetingBooked,
    /// A conversation booked for the recipient's child was moved to another slot or cancelled
    /// (the booking, or its whole round), by the other guardian or by staff.
    MeetingChanged,
    /// Tomorrow is a parent–teacher conversation booked for the recipient's child.
    MeetingReminder,
}

impl NotificationKind {
    /// Every kind, in order.
    pub const ALL: [Self; 11] = [
        Self::Post,
        Self::Message,
        Self::ActivityCreated,
        Self::ActivityReminder,
        Self::InvitationApproved,
        Self::ConsentNeeded,
        Self::AbsenceAcknowledged,
        Self::AbsenceReported,
        Self::MeetingBooked,
        Self::MeetingChanged,
        Self::MeetingReminder,
    ];

    /// The stored (and API) name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Message => "message",
            Self::ActivityCreated => "activity_created",
            Self::ActivityReminder => "activity_reminder",
            Self::InvitationApproved => "invitation_approved",
            Self::ConsentNeeded => "consent_needed",
            Self::AbsenceAcknowledged => "absence_acknowledged",
            Self::AbsenceReported => "absence_reported",
            Self::MeetingBooked => "meeting_booked",
            Self::MeetingChanged => "meeting_changed",
            Self::MeetingReminder => "meeting_reminder",
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification kind that Kring does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown notification kind {0:?}; known kinds: post, message, activity_created, activity_reminder, invitation_approved, consent_needed, absence_acknowledged, absence_reported, meeting_booked, meeting_changed, meeting_reminder")]
pub struct UnknownNotificationKind(pub String);

impl FromStr for NotificationKind {
    type Err = UnknownNotificationKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownNotificationKind(s.to_owned()))
    }
}

/// The digest time when neither the person nor their school chose one: 18:00.
pub const DEFAULT_DIGEST_AT: NaiveTime = match NaiveTime::from_hms_opt(18, 0, 0) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// The time zone of a person who did not choose one and whose school is unknown.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Amsterdam";

/// The local time, the day before an activity, at which its volunteers are reminded: 18:00.
pub const REMINDER_AT: NaiveTime = DEFAULT_DIGEST_AT;

/// A person's own notification preferences, as they set them (every field optional: what is
/// not chosen comes from the school's defaults, else the built-in ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPreferences {
    /// Their weekly quiet hours: notifications are held while quiet (staff and guardians).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// The local time of their daily digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_at: Option<NaiveTime>,
    /// Their IANA time zone (for the digest time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The channel of each kind they chose.
    #[serde(default)]
    pub kinds: BTreeMap<NotificationKind, Channel>,
}

impl NotificationPreferences {
    /// Checks the time zone and the quiet hours.
    ///
    /// # Errors
    /// `Invalid` (field `timezone`) for a name that is no IANA time zone; the errors of
    /// [`QuietHours::validate`].
    pub fn validate(mut self) -> Result<Self, DomainError> {
        if let Some(tz) = &self.timezone {
            if chrono_tz::Tz::from_str(tz).is_err() {
                return Err(DomainError::invalid(
                    "timezone",
                    format!("{tz:?} is not an IANA time zone such as Europe/Amsterdam"),
                ));
            }
        }
        if let Some(quiet) = self.quiet_hours.take() {
            self.quiet_hours = Some(quiet.validate()?);
        }
        Ok(self)
    }
}

/// A school's defaults for its members' notifications (see [`SchoolSettings`]).
///
/// [`SchoolSettings`]: crate::school::SchoolSettings
#[derive(Debug, Clone, Copy)]
pub struct SchoolNotificationDefaults<'a> {
    /// The school's time zone.
    pub timezone: &'a str,
    /// The school's default channel per kind.
    pub kinds: &'a BTreeMap<NotificationKind, Channel>,
    /// The school's default digest time.
    pub digest_at: Option<NaiveTime>,
    /// The school's default quiet hours, which hold only its staff's notifications.
    pub staff_quiet_hours: Option<&'a QuietHours>,
}

impl<'a> SchoolNotificationDefaults<'a> {
    /// The defaults in a school's settings.
    #[must_use]
    pub fn of(settings: &'a crate::school::SchoolSettings) -> Self {
        Self {
            timezone: &settings.timezone,
            kinds: &settings.default_channels,
            digest_at: settings.default_digest_at,
            staff_quiet_hours: settings.default_quiet_hours.as_ref(),
        }
    }
}

/// What decides a person's notifications: their own choice, else their school's default, else
/// the built-in default (push for every kind, `Europe/Amsterdam`, digest at 18:00, no quiet
/// hours). Staff without quiet hours of their own follow the school's default quiet hours;
/// guardians only their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePreferences {
    /// The quiet hours that hold their notifications, if any.
    pub quiet_hours: Option<QuietHours>,
    /// The local time of their daily digest.
    pub digest_at: NaiveTime,
    /// Their time zone.
    pub timezone: chrono_tz::Tz,
    /// The channel of every kind.
    pub kinds: BTreeMap<NotificationKind, Channel>,
}

impl EffectivePreferences {
    /// The preferences of a person with `own` choices (and quiet hours `own_quiet`, which the
    /// quiet-hours events also set), in a school with `school` defaults, as staff or not.
    #[must_use]
    pub fn resolve(
        own: Option<&NotificationPreferences>,
        own_quiet: Option<&QuietHours>,
        school: Option<SchoolNotificationDefaults<'_>>,
        staff: bool,
    ) -> Self {
        let timezone = own
            .and_then(|o| o.timezone.as_deref())
            .or(school.map(|s| s.timezone))
            .and_then(|tz| chrono_tz::Tz::from_str(tz).ok())
            .unwrap_or(chrono_tz::Europe::Amsterdam);
        let digest_at = own
            .and_then(|o| o.digest_at)
            .or(school.and_then(|s| s.digest_at))
            .unwrap_or(DEFAULT_DIGEST_AT);
        let kinds = NotificationKind::ALL
            .into_iter()
            .map(|kind| {
                let channel = own
                    .and_then(|o| o.kinds.get(&kind))
                    .or(school.and_then(|s| s.kinds.get(&kind)))
                    .copied()
                    .unwrap_or(Channel::Push);
                (kind, channel)
            })
            .collect();
        let quiet_hours = own_quiet
            .or(if staff {
                school.and_then(|s| s.staff_quiet_hours)
            } else {
                None
            })
            .cloned();
        Self {
            quiet_hours,
            digest_at,
            timezone,
            kinds,
        }
    }

    /// The channel of `kind`.
    #[must_use]
    pub fn channel(&self, kind: NotificationKind) -> Channel {
        self.kinds.get(&kind).copied().unwrap_or(Channel::Push)
    }

    /// When a notification of `kind` that happened at `at` (or is wanted at `at`, for a
    /// reminder) is released: a digest one at the next digest time; any other at `at`, or when
    /// the quiet period covering `at` ends. `off` ones are released at `at`: no channel ever
    /// sends them.
    #[must_use]
    pub fn release_at(&self, kind: NotificationKind, at: DateTime<Utc>) -> DateTime<Utc> {
        match self.channel(kind) {
            Channel::Digest => next_digest(at, self.digest_at, self.timezone),
            Channel::Off => at,
            Channel::Push | Channel::Email => self
                .quiet_hours
                .as_ref()
                .and_then(|q| q.quiet_until(at))
                .unwrap_or(at),
        }
    }
}

/// The first digest time strictly after `after`: `digest_at` local time in `tz` on the day of
/// `after`, or else on the next day. A local time that does not exist that day (the clocks
/// spring forward over it) moves to the first instant after the gap; one that occurs twice (the
/// clocks fall back) is the first of the two.
#[must_use]
pub fn next_digest(after: DateTime<Utc>, digest_at: NaiveTime, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let day = after.with_timezone(&tz).date_naive();
    let today = first_instant_at(tz, day.and_time(digest_at));
    if today > after {
        today
    } else {
        first_instant_at(tz, (day + Duration::days(1)).and_time(digest_at))
    }
}

/// `local` in `tz` as UTC: the earlier of two; in a gap, the first instant after the gap.
#[must_use]
pub fn first_instant_at(tz: chrono_tz::Tz, local: chrono::NaiveDateTime) -> DateTime<Utc> {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return t.with_timezone(&Utc);
    }
    // In a gap: the first whole minute after `local` that exists. Gaps are at most a few hours
    // and begin and end on whole minutes.
    let mut probe = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    for _ in 0..(48 * 60) {
        probe += Duration::minutes(1);
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    // Unreachable for a real time zone; reading the local time as UTC keeps this total.
    local.and_utc()
}

/// A person set their notification preferences (quiet hours included, which replace any set
/// with [`QuietHoursSet`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPreferencesSet {
    /// The person.
    pub person_id: PersonId,
    /// What they chose.
    pub preferences: NotificationPreferences,
}

/// A person's identity at a single sign-on issuer: a token of `issuer` whose `sub` is the
/// subject is this person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoIdentity {
    /// The issuer (`iss`), e.g. the school board's sign-in service.
    pub issuer: String,
    /// The person's subject (`sub`) there (personal, sealed for the person).
    pub subject: Sealed<String>,
    /// A digest of issuer and subject that finds the person from a token without opening the
    /// subject (hex SHA-256, computed where tokens are verified).
    pub digest: String,
}

impl SsoIdentity {
    /// An identity of `person` at `issuer`, checked: the subject is 1 to 255 characters.
    ///
    /// # Errors
    /// `Invalid` for an empty or overlong subject or issuer, or a digest that is not 64 hex
    /// digits.
    pub fn new(
        person: PersonId,
        issuer: &str,
        subject: &str,
        digest: String,
    ) -> Result<Self, DomainError> {
        let subject = validate::text("sso_subject", subject, 255)?;
        let issuer = validate::text("issuer", issuer, 500)?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DomainError::invalid("digest", "not a hex SHA-256 digest"));
        }
        Ok(Self {
            issuer,
            subject: Sealed::new(Subject::Person(person), subject),
            digest,
        })
    }
}

/// A person linked their identity at a single sign-on issuer (once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLinked {
    /// The person.
    pub person_id: PersonId,
    /// The identity.
    pub identity: SsoIdentity,
}

/// A person's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Their quiet hours, when set.
    pub quiet_hours: Option<QuietHours>,
    /// Whether erasure was requested.
    pub erasure_requested: bool,
    /// Whether the person's key was destroyed.
    pub erased: bool,
    /// Whether the person linked a single sign-on identity.
    pub identity_linked: bool,
    /// Their notification preferences, when set (`quiet_hours` there is unused: see
    /// [`Person::quiet_hours`]).
    pub notification_preferences: Option<NotificationPreferences>,
    /// The person's push subscriptions still in force.
    pub push_subscriptions: std::collections::BTreeSet<uuid::Uuid>,
}

/// A staff member set their quiet hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHoursSet {
    /// The staff member.
    pub person_id: PersonId,
    /// The schedule.
    pub schedule: QuietHours,
}

/// A staff member cleared their quiet hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHoursCleared {
    /// The staff member.
    pub person_id: PersonId,
}

/// Erasure of a person's personal data was requested (GDPR art. 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonErasureRequested {
    /// The person.
    pub person_id: PersonId,
    /// Who asked.
    pub requested_by: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

/// The person's data key was destroyed: every field sealed for them now reads as erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonErased {
    /// The person.
    pub person_id: PersonId,
    /// Who carried it out.
    pub by: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

/// The most posts, and the most messages, one [`ItemsRead`] records.
pub const MAX_READ_ITEMS: usize = 500;

/// A person read posts and messages (marked them read). Ids only: who read what is the
/// person's personal data, kept in their stream (their export holds it) and dropped from the
/// read receipts read model when they are erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemsRead {
    /// The reader.
    pub person_id: PersonId,
    /// The posts read, each once.
    #[serde(default)]
    pub post_ids: Vec<PostId>,
    /// The messages read, each once.
    #[serde(default)]
    pub message_ids: Vec<MessageId>,
    /// When.
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Events of a person stream.
    pub enum PersonEvent {
        /// See [`QuietHoursSet`].
        QuietHoursSet,
        /// See [`QuietHoursCleared`].
        QuietHoursCleared,
        /// See [`PersonErasureRequested`].
        PersonErasureRequested,
        /// See [`PersonErased`].
        PersonErased,
        /// See [`IdentityLinked`].
        IdentityLinked,
        /// See [`NotificationPreferencesSet`].
        NotificationPreferencesSet,
        /// See [`PushSubscribed`].
        PushSubscribed,
        /// See [`PushUnsubscribed`].
        PushUnsubscribed,
        /// See [`PushSubscriptionExpired`].
        PushSubscriptionExpired,
        /// See [`ItemsRead`].
        ItemsRead,
    }
}

/// What can be asked about a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonAction {
    /// Set one's own quiet hours (staff).
    SetQuietHours(QuietHours),
    /// Clear one's own quiet hours (staff).
    ClearQuietHours,
    /// Set one's own notification preferences, quiet hours included (anyone signed in).
    SetNotificationPreferences(NotificationPreferences),
    /// Ask for erasure of the person's data (a director of a school they belong to, operator).
    RequestErasure {
        /// The person.
        person_id: PersonId,
    },
    /// Record that the person's data key was destroyed (the system, carrying out a request).
    RecordErasure {
        /// The person.
        person_id: PersonId,
    },
    /// Link one's own single sign-on identity (the person themself, once).
    LinkIdentity {
        /// The person.
        person_id: PersonId,
        /// Their identity.
        identity: SsoIdentity,
    },
    /// Subscribe one of one's own devices to push messages (the person themself).
    SubscribePush {
        /// The person.
        person_id: PersonId,
        /// The new subscription's id.
        subscription_id: uuid::Uuid,
        /// The device's endpoint and keys (checked by the caller: an `https` URL of a public
        /// host, keys that decode).
        endpoint: PushEndpoint,
    },
    /// Remove one of one's own push subscriptions (the person themself).
    UnsubscribePush {
        /// The person.
        person_id: PersonId,
        /// The subscription.
        subscription_id: uuid::Uuid,
    },
    /// Record that the push service no longer knows a subscription (the system).
    ExpirePush {
        /// The person.
        person_id: PersonId,
        /// The subscription.
        subscription_id: uuid::Uuid,
        /// The push service's answer (`404` or `410`).
        status: u16,
    },
    /// Mark posts and messages read (the person themself). Which of them the person may see,
    /// and which they read before, is for the caller to check on the read models: the person's
    /// stream holds neither.
    MarkRead {
        /// The reader.
        person_id: PersonId,
        /// Posts.
        post_ids: Vec<PostId>,
        /// Messages.
        message_ids: Vec<MessageId>,
    },
}

/// The most push subscriptions one person keeps (devices).
pub const MAX_PUSH_SUBSCRIPTIONS: usize = 20;

/// The state `decide` needs: the person's state and the roster of the school in question.
#[derive(Debug, Clone, Copy)]
pub struct PersonContext<'a> {
    /// The person's state.
    pub person: &'a Person,
    /// The roster of the school the command is about.
    pub school: &'a School,
}

/// Decides a command about a person.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
pub fn decide(
    ctx: &PersonContext<'_>,
    command: Command<PersonAction>,
    now: DateTime<Utc>,
) -> Result<Vec<PersonEvent>, DomainError> {
    let PersonContext { person, school } = *ctx;
    let Command { actor, action } = command;
    let event: PersonEvent = match action {
        PersonAction::SetQuietHours(schedule) => {
            let person_id = own_staff(school, actor)?;
            QuietHoursSet {
                person_id,
                schedule: schedule.validate()?,
            }
            .into()
        }
        PersonAction::SetNotificationPreferences(preferences) => {
            let Some(person_id) = actor.person() else {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "set notification preferences (people only)",
                });
            };
            if person.erased {
                return Err(DomainError::invalid(
                    "person_id",
                    format!("person {person_id} was erased"),
                ));
            }
            NotificationPreferencesSet {
                person_id,
                preferences: preferences.validate()?,
            }
            .into()
        }
        PersonAction::ClearQuietHours => {
            let person_id = own_staff(school, actor)?;
            if person.quiet_hours.is_none() {
                return Err(DomainError::AlreadyDone {
                    what: format!("person {person_id} without quiet hours"),
                });
            }
            QuietHoursCleared { person_id }.into()
        }
        PersonAction::RequestErasure { person_id } => {
            let member = school.staff.contains_key(&person_id)
                || school
                    .children
                    .values()
                    .any(|e| e.guardians.contains(&person_id));
            if !(actor == Actor::Operator || (school.is_director(actor) && member)) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "request erasure of a person's data",
                });
            }
            if person.erasure_requested {
                return Err(DomainError::AlreadyDone {
                    what: format!("erasure of person {person_id} requested"),
                });
            }
            PersonErasureRequested {
                person_id,
                requested_by: actor,
                at: now,
            }
            .into()
        }
        PersonAction::RecordErasure { person_id } => {
            if !(actor == Actor::System || actor == Actor::Operator || school.is_director(actor)) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "erase a person's data",
                });
            }
            if !person.erasure_requested {
                return Err(DomainError::invalid(
                    "person_id",
                    format!("no erasure of person {person_id} was requested"),
                ));
            }
            if person.erased {
                return Err(DomainError::AlreadyDone {
                    what: format!("person {person_id} erased"),
                });
            }
            PersonErased {
                person_id,
                by: actor,
                at: now,
            }
            .into()
        }
        PersonAction::LinkIdentity {
            person_id,
            identity,
        } => {
            if actor != Actor::Person(person_id) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "link a single sign-on identity",
                });
            }
            if person.erased {
                return Err(DomainError::invalid(
                    "person_id",
                    format!("person {person_id} was erased"),
                ));
            }
            if person.identity_linked {
                return Err(DomainError::AlreadyDone {
                    what: format!("person {person_id} linked a single sign-on identity"),
                });
            }
            IdentityLinked {
                person_id,
                identity,
            }
            .into()
        }
        PersonAction::SubscribePush {
            person_id,
            subscription_id,
            endpoint,
        } => {
            if actor != Actor::Person(person_id) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "subscribe a device to push messages",
                });
            }
            if person.erased || person.erasure_requested {
                return Err(DomainError::invalid(
                    "person_id",
                    format!("person {person_id} is being erased"),
                ));
            }
            if person.push_subscriptions.len() >= MAX_PUSH_SUBSCRIPTIONS {
                return Err(DomainError::invalid(
                    "endpoint",
                    format!("at most {MAX_PUSH_SUBSCRIPTIONS} push subscriptions per person: remove one first"),
                ));
            }
            PushSubscribed {
                person_id,
                subscription_id,
                subscription: Sealed::new(Subject::Person(person_id), endpoint),
            }
            .into()
        }
        PersonAction::UnsubscribePush {
            person_id,
            subscription_id,
        } => {
            if actor != Actor::Person(person_id) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "remove a push subscription",
                });
            }
            if !person.push_subscriptions.contains(&subscription_id) {
                return Err(DomainError::not_found("push subscription", subscription_id));
            }
            PushUnsubscribed {
                person_id,
                subscription_id,
            }
            .into()
        }
        PersonAction::ExpirePush {
            person_id,
            subscription_id,
            status,
        } => {
            if actor != Actor::System {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "expire a push subscription",
                });
            }
            if !person.push_subscriptions.contains(&subscription_id) {
                return Err(DomainError::AlreadyDone {
                    what: format!("push subscription {subscription_id} removed"),
                });
            }
            PushSubscriptionExpired {
                person_id,
                subscription_id,
                status,
            }
            .into()
        }
        PersonAction::MarkRead {
            person_id,
            post_ids,
            message_ids,
        } => return mark_read(person, actor, person_id, post_ids, message_ids, now),
    };
    Ok(vec![event])
}

/// Rule: a person marks only their own reads, not once erasure was asked for; each id once, at
/// most [`MAX_READ_ITEMS`] of a kind; nothing to mark records nothing.
fn mark_read(
    person: &Person,
    actor: Actor,
    person_id: PersonId,
    post_ids: Vec<PostId>,
    message_ids: Vec<MessageId>,
    now: DateTime<Utc>,
) -> Result<Vec<PersonEvent>, DomainError> {
    if actor != Actor::Person(person_id) {
        return Err(DomainError::NotAllowed {
            actor,
            action: "mark another person's reads",
        });
    }
    if person.erasure_requested || person.erased {
        return Err(DomainError::invalid(
            "person_id",
            format!("person {person_id} is being erased: nothing more is recorded about them"),
        ));
    }
    let post_ids = once_each(post_ids);
    let message_ids = once_each(message_ids);
    if post_ids.len() > MAX_READ_ITEMS {
        return Err(DomainError::invalid(
            "post_ids",
            format!("at most {MAX_READ_ITEMS} at once"),
        ));
    }
    if message_ids.len() > MAX_READ_ITEMS {
        return Err(DomainError::invalid(
            "message_ids",
            format!("at most {MAX_READ_ITEMS} at once"),
        ));
    }
    if post_ids.is_empty() && message_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![ItemsRead {
        person_id,
        post_ids,
        message_ids,
        at: now,
    }
    .into()])
}

/// `ids` without repeats, in their first order.
fn once_each<T: Ord + Copy>(ids: Vec<T>) -> Vec<T> {
    let mut seen = std::collections::BTreeSet::new();
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

fn own_staff(school: &School, actor: Actor) -> Result<PersonId, DomainError> {
    match actor.person() {
        Some(p) if school.staff.contains_key(&p) => Ok(p),
        _ => Err(DomainError::NotAllowed {
            actor,
            action: "set quiet hours (staff only)",
        }),
    }
}

/// Applies a person event to the state.
#[must_use]
pub fn evolve(mut state: Person, event: &PersonEvent) -> Person {
    match event {
        PersonEvent::QuietHoursSet(e) => state.quiet_hours = Some(e.schedule.clone()),
        PersonEvent::QuietHoursCleared(_) => state.quiet_hours = None,
        PersonEvent::PersonErasureRequested(_) => state.erasure_requested = true,
        PersonEvent::PersonErased(_) => state.erased = true,
        PersonEvent::IdentityLinked(_) => state.identity_linked = true,
        PersonEvent::NotificationPreferencesSet(e) => {
            state.quiet_hours.clone_from(&e.preferences.quiet_hours);
            let mut own = e.preferences.clone();
            own.quiet_hours = None;
            state.notification_preferences = Some(own);
        }
        PersonEvent::PushSubscribed(e) => {
            state.push_subscriptions.insert(e.subscription_id);
        }
        PersonEvent::PushUnsubscribed(e) => {
            state.push_subscriptions.remove(&e.subscription_id);
        }
        PersonEvent::PushSubscriptionExpired(e) => {
            state.push_subscriptions.remove(&e.subscription_id);
        }
        // Reads are kept by the read receipts read model, not in the person's state.
        PersonEvent::ItemsRead(_) => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default()
    }

    #[test]
    fn quiet_hours_hold_overnight_and_chain_across_midnight() {
        let schedule = QuietHours {
            timezone: "Europe/Amsterdam".into(),
            weekly: vec![
                QuietPeriod {
                    day: Day::Monday,
                    start: time(18, 0),
                    end: time(0, 0),
                },
                QuietPeriod {
                    day: Day::Tuesday,
                    start: time(0, 0),
                    end: time(7, 30),
                },
            ],
        };
        // 2026-11-23 is a Monday; Amsterdam is UTC+1 in November.
        assert_eq!(schedule.quiet_until(t("2026-11-23T16:59:00Z")), None);
        assert_eq!(
            schedule.quiet_until(t("2026-11-23T20:00:00Z")),
            Some(t("2026-11-24T06:30:00Z")),
            "Monday evening runs on into Tuesday morning"
        );
        assert_eq!(schedule.quiet_until(t("2026-11-24T06:30:00Z")), None);
    }

    const AMS: chrono_tz::Tz = chrono_tz::Europe::Amsterdam;

    #[test]
    fn the_digest_is_the_next_digest_time_in_the_recipients_zone() {
        // Saturday 2027-03-27 is still winter time (UTC+1).
        assert_eq!(
            next_digest(t("2027-03-27T09:00:00Z"), time(18, 0), AMS),
            t("2027-03-27T17:00:00Z")
        );
        // Past today's digest: tomorrow's, which is summer time (UTC+2).
        assert_eq!(
            next_digest(t("2027-03-27T17:00:00Z"), time(18, 0), AMS),
            t("2027-03-28T16:00:00Z"),
            "exactly at the digest time: the next one"
        );
        // Sunday 2027-10-31 is winter time again.
        assert_eq!(
            next_digest(t("2027-10-30T20:00:00Z"), time(18, 0), AMS),
            t("2027-10-31T17:00:00Z")
        );
    }

    #[test]
    fn a_digest_time_in_the_spring_gap_moves_to_the_end_of_the_gap() {
        // 2027-03-28 02:00 CET the clocks jump to 03:00 CEST: 02:30 does not exist.
        assert_eq!(
            next_digest(t("2027-03-27T12:00:00Z"), time(2, 30), AMS),
            t("2027-03-28T01:00:00Z"),
            "03:00 CEST, the first instant after the gap"
        );
        // The day after, 02:30 exists again (CEST).
        assert_eq!(
            next_digest(t("2027-03-28T01:00:00Z"), time(2, 30), AMS),
            t("2027-03-29T00:30:00Z")
        );
    }

    #[test]
    fn a_digest_time_that_occurs_twice_in_autumn_is_the_first() {
        // 2027-10-31 03:00 CEST the clocks go back to 02:00 CET: 02:30 happens twice.
        assert_eq!(
            next_digest(t("2027-10-30T12:00:00Z"), time(2, 30), AMS),
            t("2027-10-31T00:30:00Z"),
            "02:30 CEST, not 02:30 CET"
        );
        // After the first 02:30, the next digest is the next day's, not the second 02:30.
        assert_eq!(
            next_digest(t("2027-10-31T00:30:00Z"), time(2, 30), AMS),
            t("2027-11-01T01:30:00Z")
        );
    }

    proptest::proptest! {
        #[test]
        fn the_next_digest_is_after_and_within_a_day_and_a_bit(
            secs in 1_700_000_000i64..1_900_000_000i64,
            h in 0u32..24,
            m in 0u32..60,
        ) {
            let after = DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let next = next_digest(after, time(h, m), AMS);
            proptest::prop_assert!(next > after);
            // A day, plus an hour for a day that is 25 hours long.
            proptest::prop_assert!(next - after <= Duration::hours(25));
            // It is the digest time locally, unless that time fell in a gap.
            let local = next.with_timezone(&AMS).time();
            proptest::prop_assert!(local == time(h, m) || local == time(3, 0));
        }
    }

    #[test]
    fn preferences_resolve_own_then_school_then_built_in() {
        let mut school_kinds = BTreeMap::new();
        school_kinds.insert(NotificationKind::Post, Channel::Digest);
        school_kinds.insert(NotificationKind::Message, Channel::Email);
        let settings = crate::school::SchoolSettings {
            timezone: "Europe/London".into(),
            default_channels: school_kinds,
            default_digest_at: Some(time(7, 0)),
            ..Default::default()
        };
        let mut own = NotificationPreferences::default();
        own.kinds.insert(NotificationKind::Post, Channel::Off);
        let e = EffectivePreferences::resolve(
            Some(&own),
            None,
            Some(SchoolNotificationDefaults::of(&settings)),
            false,
        );
        assert_eq!(
            e.channel(NotificationKind::Post),
            Channel::Off,
            "own choice"
        );
        assert_eq!(
            e.channel(NotificationKind::Message),
            Channel::Email,
            "school's"
        );
        assert_eq!(
            e.channel(NotificationKind::ActivityCreated),
            Channel::Push,
            "built in"
        );
        assert_eq!(e.digest_at, time(7, 0));
        assert_eq!(e.timezone, chrono_tz::Europe::London);
        let built_in = EffectivePreferences::resolve(None, None, None, false);
        assert_eq!(built_in.digest_at, time(18, 0));
        assert_eq!(built_in.timezone, AMS);
        assert!(built_in.kinds.values().all(|c| *c == Channel::Push));
        assert_eq!(built_in.kinds.len(), NotificationKind::ALL.len());
    }

    #[test]
    fn the_school_default_quiet_hours_hold_staff_only() {
        let quiet = QuietHours {
            timezone: "Europe/Amsterdam".into(),
            weekly: vec![QuietPeriod {
                day: Day::Monday,
                start: time(18, 0),
                end: time(7, 0),
            }],
        };
        let settings = crate::school::SchoolSettings {
            default_quiet_hours: Some(quiet.clone()),
            ..Default::default()
        };
        let school = Some(SchoolNotificationDefaults::of(&settings));
        let monday_evening = t("2026-11-23T20:00:00Z");
        let staff = EffectivePreferences::resolve(None, None, school, true);
        assert_eq!(
            staff.release_at(NotificationKind::Message, monday_evening),
            t("2026-11-24T06:00:00Z")
        );
        let guardian = EffectivePreferences::resolve(None, None, school, false);
        assert_eq!(
            guardian.release_at(NotificationKind::Message, monday_evening),
            monday_evening
        );
        let quiet_guardian = EffectivePreferences::resolve(None, Some(&quiet), school, false);
        assert_eq!(
            quiet_guardian.release_at(NotificationKind::Message, monday_evening),
            t("2026-11-24T06:00:00Z"),
            "a guardian's own quiet hours hold theirs"
        );
    }

    #[test]
    fn names_read_back_and_unknown_ones_are_typed_errors() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>(), Ok(c));
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(serde_json::json!(c.as_str()))
            );
        }
        for k in NotificationKind::ALL {
            assert_eq!(k.as_str().parse::<NotificationKind>(), Ok(k));
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::json!(k.as_str()))
            );
        }
        assert_eq!("sms".parse::<Channel>(), Err(UnknownChannel("sms".into())));
        assert!("meeting".parse::<NotificationKind>().is_err());
    }

    #[test]
    fn preferences_with_an_unknown_zone_or_bad_quiet_hours_are_refused() {
        let bad_zone = NotificationPreferences {
            timezone: Some("Mars/Olympus".into()),
            ..Default::default()
        };
        assert!(matches!(
            bad_zone.validate(),
            Err(DomainError::Invalid {
                field: "timezone",
                ..
            })
        ));
        let bad_quiet = NotificationPreferences {
            quiet_hours: Some(QuietHours {
                timezone: "Europe/Amsterdam".into(),
                weekly: vec![QuietPeriod {
                    day: Day::Monday,
                    start: time(8, 0),
                    end: time(8, 0),
                }],
            }),
            ..Default::default()
        };
        assert!(bad_quiet.validate().is_err());
    }

    fn mark(
        person: &Person,
        actor: Actor,
        reader: PersonId,
        posts: Vec<PostId>,
    ) -> Result<Vec<PersonEvent>, DomainError> {
        decide(
            &PersonContext {
                person,
                school: &School::default(),
            },
            Command::new(
                actor,
                PersonAction::MarkRead {
                    person_id: reader,
                    post_ids: posts,
                    message_ids: Vec::new(),
                },
            ),
            t("2026-11-23T12:00:00Z"),
        )
    }

    #[test]
    fn a_person_marks_only_their_own_reads_each_id_once() {
        let reader = PersonId::generate();
        let [a, b] = [PostId::generate(), PostId::generate()];
        let events = mark(
            &Person::default(),
            Actor::Person(reader),
            reader,
            vec![a, b, a],
        )
        .unwrap_or_default();
        let [PersonEvent::ItemsRead(read)] = events.as_slice() else {
            panic!("one ItemsRead, got {events:?}");
        };
        assert_eq!(read.post_ids, vec![a, b], "each post once, in order");
        assert!(matches!(
            mark(
                &Person::default(),
                Actor::Person(PersonId::generate()),
                reader,
                vec![a]
            ),
            Err(DomainError::NotAllowed { .. })
        ));
        assert_eq!(
            mark(
                &Person::default(),
                Actor::Person(reader),
                reader,
                Vec::new()
            ),
            Ok(Vec::new()),
            "nothing to mark records nothing"
        );
    }

    #[test]
    fn nothing_more_is_read_for_a_person_being_erased_and_lists_are_bounded() {
        let reader = PersonId::generate();
        let erasing = Person {
            erasure_requested: true,
            ..Person::default()
        };
        assert!(matches!(
            mark(
                &erasing,
                Actor::Person(reader),
                reader,
                vec![PostId::generate()]
            ),
            Err(DomainError::Invalid {
                field: "person_id",
                ..
            })
        ));
        let many = (0..=MAX_READ_ITEMS).map(|_| PostId::generate()).collect();
        assert!(matches!(
            mark(&Person::default(), Actor::Person(reader), reader, many),
            Err(DomainError::Invalid {
                field: "post_ids",
                ..
            })
        ));
    }
}
