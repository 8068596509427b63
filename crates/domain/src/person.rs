//! A person's own facts: staff quiet hours ("stiltemodus"), erasure requests, and what they
//! read (read receipts: ids only, kept with the person so that export and erasure cover them).

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{MessageId, PersonId, PostId};
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};
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
