//! A person's own facts: staff quiet hours ("stiltemodus") and erasure requests.

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::PersonId;
use crate::push::{PushEndpoint, PushSubscribed, PushSubscriptionExpired, PushUnsubscribed};
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};
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
    /// The school acknowledged a planned absence the recipient reported.
    AbsenceAcknowledged,
    /// A guardian reported a planned absence of a child of the recipient's group (staff).
    AbsenceReported,
}

impl NotificationKind {
    /// Every kind, in order.
    pub const ALL: [Self; 8] = [
        Self::Post,
        Self::Message,
        Self::ActivityCreated,
        Self::ActivityReminder,
        Self::InvitationApproved,
        Self::ConsentNeeded,
        Self::AbsenceAcknowledged,
        Self::AbsenceReported,
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
#[error("unknown notification kind {0:?}; known kinds: post, message, activity_created, activity_reminder, invitation_approved, consent_needed, absence_acknowledged, absence_reported")]
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
        /// See [`PushSubscribed`].
        PushSubscribed,
        /// See [`PushUnsubscribed`].
        PushUnsubscribed,
        /// See [`PushSubscriptionExpired`].
        PushSubscriptionExpired,
    }
}

/// What can be asked about a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonAction {
    /// Set one's own quiet hours (staff).
    SetQuietHours(QuietHours),
    /// Clear one's own quiet hours (staff).
    ClearQuietHours,
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
    };
    Ok(vec![event])
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
        PersonEvent::PushSubscribed(e) => {
            state.push_subscriptions.insert(e.subscription_id);
        }
        PersonEvent::PushUnsubscribed(e) => {
            state.push_subscriptions.remove(&e.subscription_id);
        }
        PersonEvent::PushSubscriptionExpired(e) => {
            state.push_subscriptions.remove(&e.subscription_id);
        }
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
}
