//! A child's own facts: consent decisions per purpose, planned absences, erasure requests.

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::consent::{ConsentMethod, Consents, LatestDecision};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{AbsenceId, ChildId, GroupId, PersonId, SchoolId};
use crate::purpose::Purpose;
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The time zone of a school's calendar: "a day ahead" is counted in it.
pub const SCHOOL_TIME_ZONE: chrono_tz::Tz = chrono_tz::Europe::Amsterdam;

/// The longest planned absence one report may cover.
pub const MAX_ABSENCE_DAYS: i64 = 31;

/// A planned absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absence {
    /// First day absent.
    pub from: NaiveDate,
    /// Last day absent.
    pub to: NaiveDate,
    /// Whether the guardian cancelled it.
    pub cancelled: bool,
    /// The guardian who reported it.
    pub reported_by: Option<PersonId>,
    /// Whether the school acknowledged it.
    pub acknowledged: bool,
}

/// A child's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Child {
    /// Each guardian's latest consent decision per purpose.
    pub consents: Consents,
    /// Planned absences.
    pub absences: BTreeMap<AbsenceId, Absence>,
    /// Whether erasure was requested.
    pub erasure_requested: bool,
    /// Whether the child's key was destroyed.
    pub erased: bool,
}

/// A guardian granted or withdrew consent for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentDecided {
    /// The child.
    pub child_id: ChildId,
    /// The school.
    pub school_id: SchoolId,
    /// The purpose.
    pub purpose: Purpose,
    /// Granted (`true`) or withdrawn (`false`).
    pub granted: bool,
    /// The guardian who decided.
    pub guardian_id: PersonId,
    /// The consent-policy version the decision answers.
    pub policy_version: u32,
    /// How it was given.
    pub method: ConsentMethod,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The staff member who entered a guardian's paper form; `None` when the guardian decided
    /// themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<PersonId>,
}

impl From<&ConsentDecided> for LatestDecision {
    fn from(e: &ConsentDecided) -> Self {
        Self {
            granted: e.granted,
            at: e.at,
            policy_version: e.policy_version,
            method: e.method,
        }
    }
}

/// A guardian reported a planned absence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAbsenceReported {
    /// The child.
    pub child_id: ChildId,
    /// The school.
    pub school_id: SchoolId,
    /// The child's class group, for the staff's day list.
    pub group_id: GroupId,
    /// The absence.
    pub absence_id: AbsenceId,
    /// First day absent.
    pub from: NaiveDate,
    /// Last day absent.
    pub to: NaiveDate,
    /// Why (personal, sealed for the child).
    pub reason: Sealed<String>,
    /// The guardian who reported it.
    pub reported_by: PersonId,
}

/// A guardian cancelled a planned absence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAbsenceCancelled {
    /// The child.
    pub child_id: ChildId,
    /// The absence.
    pub absence_id: AbsenceId,
    /// Who cancelled it.
    pub by: PersonId,
}

/// Staff of the child's group acknowledged a planned absence: the reporting guardian is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAbsenceAcknowledged {
    /// The child.
    pub child_id: ChildId,
    /// The school.
    pub school_id: SchoolId,
    /// The absence.
    pub absence_id: AbsenceId,
    /// The guardian who reported it.
    pub reported_by: PersonId,
    /// The staff member who acknowledged it.
    pub by: PersonId,
    /// When.
    pub at: DateTime<Utc>,
}

/// Erasure of the child's personal data was requested (GDPR art. 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildErasureRequested {
    /// The child.
    pub child_id: ChildId,
    /// The school.
    pub school_id: SchoolId,
    /// Who asked.
    pub requested_by: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

/// The child's data key was destroyed: every field sealed for the child now reads as erased.
/// Non-personal: the consent decisions (who, what, when, policy version) stay demonstrable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildErased {
    /// The child.
    pub child_id: ChildId,
    /// Who carried it out.
    pub by: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Events of a child stream.
    pub enum ChildEvent {
        /// See [`ConsentDecided`].
        ConsentDecided,
        /// See [`PlannedAbsenceReported`].
        PlannedAbsenceReported,
        /// See [`PlannedAbsenceCancelled`].
        PlannedAbsenceCancelled,
        /// See [`PlannedAbsenceAcknowledged`].
        PlannedAbsenceAcknowledged,
        /// See [`ChildErasureRequested`].
        ChildErasureRequested,
        /// See [`ChildErased`].
        ChildErased,
    }
}

/// What can be asked about a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildAction {
    /// Grant or withdraw consent for a purpose (a guardian of the child).
    DecideConsent {
        /// The child.
        child_id: ChildId,
        /// The purpose.
        purpose: Purpose,
        /// Grant (`true`) or withdraw (`false`).
        granted: bool,
        /// How it was given.
        method: ConsentMethod,
    },
    /// Record a guardian's decision given on a paper form (staff of the child's group, on the
    /// guardian's behalf).
    RecordPaperConsent {
        /// The child.
        child_id: ChildId,
        /// The purpose.
        purpose: Purpose,
        /// Grant (`true`) or withdraw (`false`).
        granted: bool,
        /// The guardian whose form it is.
        guardian_id: PersonId,
    },
    /// Report a planned absence (a guardian of the child).
    ReportAbsence {
        /// The child.
        child_id: ChildId,
        /// The new absence's id.
        absence_id: AbsenceId,
        /// First day absent.
        from: NaiveDate,
        /// Last day absent.
        to: NaiveDate,
        /// Why.
        reason: String,
    },
    /// Cancel a planned absence (a guardian of the child).
    CancelAbsence {
        /// The child.
        child_id: ChildId,
        /// The absence.
        absence_id: AbsenceId,
    },
    /// Acknowledge a planned absence (staff of the child's group, a director).
    AcknowledgeAbsence {
        /// The child.
        child_id: ChildId,
        /// The absence.
        absence_id: AbsenceId,
    },
    /// Ask for erasure of the child's personal data (director, operator).
    RequestErasure {
        /// The child.
        child_id: ChildId,
    },
    /// Record that the child's data key was destroyed (the system, carrying out a request).
    RecordErasure {
        /// The child.
        child_id: ChildId,
    },
}

/// The state `decide` needs: the child's own state and the school roster.
#[derive(Debug, Clone, Copy)]
pub struct ChildContext<'a> {
    /// The child's state.
    pub child: &'a Child,
    /// The school's roster.
    pub school: &'a School,
}

fn guardian(
    school: &School,
    actor: Actor,
    child_id: ChildId,
    action: &'static str,
) -> Result<PersonId, DomainError> {
    school.enrolment(child_id)?;
    match actor.person() {
        Some(person) if school.is_guardian(person, child_id) => Ok(person),
        Some(person) => Err(DomainError::NotGuardian {
            person_id: person,
            child_id,
            action,
        }),
        None => Err(DomainError::NotAllowed { actor, action }),
    }
}

/// The earliest day a planned absence may start when reported at `now`.
#[must_use]
pub fn earliest_absence_day(now: DateTime<Utc>, notice_days: u32) -> NaiveDate {
    earliest_absence_day_in(SCHOOL_TIME_ZONE, now, notice_days)
}

/// The earliest day a planned absence may start when reported at `now`, counting days in the
/// school's time zone `tz`.
#[must_use]
pub fn earliest_absence_day_in(
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
    notice_days: u32,
) -> NaiveDate {
    let today = now.with_timezone(&tz).date_naive();
    today + Duration::days(i64::from(notice_days))
}

/// A decision under the school's current policy, which must ask for `purpose`.
#[expect(clippy::too_many_arguments)]
fn consent_decided(
    school: &School,
    child_id: ChildId,
    purpose: Purpose,
    granted: bool,
    guardian_id: PersonId,
    method: ConsentMethod,
    recorded_by: Option<PersonId>,
    now: DateTime<Utc>,
) -> Result<ConsentDecided, DomainError> {
    let school_id = school.id()?;
    let policy = school
        .policy
        .as_ref()
        .ok_or(DomainError::NoConsentPolicy { school_id })?;
    if !policy.asks(purpose) {
        return Err(DomainError::PurposeNotInPolicy {
            purpose,
            policy_version: policy.version,
        });
    }
    Ok(ConsentDecided {
        child_id,
        school_id,
        purpose,
        granted,
        guardian_id,
        policy_version: policy.version,
        method,
        at: now,
        recorded_by,
    })
}

/// Decides a command about a child.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
pub fn decide(
    ctx: &ChildContext<'_>,
    command: Command<ChildAction>,
    now: DateTime<Utc>,
) -> Result<Vec<ChildEvent>, DomainError> {
    let ChildContext { child, school } = *ctx;
    let Command { actor, action } = command;
    let school_id = school.id()?;
    let event: ChildEvent = match action {
        ChildAction::DecideConsent {
            child_id,
            purpose,
            granted,
            method,
        } => {
            let guardian_id = guardian(school, actor, child_id, "change the child's consent")?;
            consent_decided(
                school,
                child_id,
                purpose,
                granted,
                guardian_id,
                method,
                None,
                now,
            )?
            .into()
        }
        ChildAction::RecordPaperConsent {
            child_id,
            purpose,
            granted,
            guardian_id,
        } => {
            let enrolment = school.enrolment(child_id)?;
            if !school.is_group_staff(actor, enrolment.group_id) {
                return Err(DomainError::NotStaffOfGroup {
                    actor,
                    group_id: enrolment.group_id,
                    action: "record a guardian's paper consent form",
                });
            }
            if !enrolment.guardians.contains(&guardian_id) {
                return Err(DomainError::not_found("guardianship", guardian_id));
            }
            let recorded_by = actor.person();
            consent_decided(
                school,
                child_id,
                purpose,
                granted,
                guardian_id,
                ConsentMethod::Paper,
                recorded_by,
                now,
            )?
            .into()
        }
        ChildAction::ReportAbsence {
            child_id,
            absence_id,
            from,
            to,
            reason,
        } => {
            let reported_by = guardian(school, actor, child_id, "report an absence")?;
            if child.absences.contains_key(&absence_id) {
                return Err(DomainError::AlreadyExists {
                    kind: "absence",
                    id: absence_id.into(),
                });
            }
            if to < from {
                return Err(DomainError::invalid("to", "must not be before from"));
            }
            if (to - from).num_days() >= MAX_ABSENCE_DAYS {
                return Err(DomainError::invalid(
                    "to",
                    format!("one report covers at most {MAX_ABSENCE_DAYS} days"),
                ));
            }
            let notice_days = school.settings.absence_notice_days;
            let earliest = earliest_absence_day_in(school.settings.tz(), now, notice_days);
            if from < earliest {
                return Err(DomainError::AbsenceNoticeTooShort {
                    child_id,
                    from,
                    earliest,
                    notice_days,
                });
            }
            PlannedAbsenceReported {
                child_id,
                school_id,
                group_id: school.enrolment(child_id)?.group_id,
                absence_id,
                from,
                to,
                reason: Sealed::new(
                    Subject::Child(child_id),
                    validate::text("reason", &reason, 500)?,
                ),
                reported_by,
            }
            .into()
        }
        ChildAction::CancelAbsence {
            child_id,
            absence_id,
        } => {
            let by = guardian(school, actor, child_id, "cancel an absence")?;
            match child.absences.get(&absence_id) {
                None => return Err(DomainError::not_found("absence", absence_id)),
                Some(a) if a.cancelled => {
                    return Err(DomainError::AlreadyDone {
                        what: format!("absence {absence_id} cancelled"),
                    })
                }
                Some(_) => {}
            }
            PlannedAbsenceCancelled {
                child_id,
                absence_id,
                by,
            }
            .into()
        }
        ChildAction::AcknowledgeAbsence {
            child_id,
            absence_id,
        } => {
            let enrolment = school.enrolment(child_id)?;
            let by = match actor.person() {
                Some(p)
                    if school.is_director(actor)
                        || (school.staff.contains_key(&p)
                            && school
                                .groups
                                .get(&enrolment.group_id)
                                .is_some_and(|g| g.staff.contains(&p))) =>
                {
                    p
                }
                _ => {
                    return Err(DomainError::NotAllowed {
                        actor,
                        action: "acknowledge an absence (staff of the child's group)",
                    })
                }
            };
            let absence = child
                .absences
                .get(&absence_id)
                .ok_or_else(|| DomainError::not_found("absence", absence_id))?;
            if absence.acknowledged {
                return Err(DomainError::AlreadyDone {
                    what: format!("absence {absence_id} acknowledged"),
                });
            }
            if absence.cancelled {
                return Err(DomainError::AlreadyDone {
                    what: format!("absence {absence_id} cancelled"),
                });
            }
            let Some(reported_by) = absence.reported_by else {
                return Err(DomainError::not_found("absence", absence_id));
            };
            let Some(school_id) = school.school_id else {
                return Err(DomainError::not_found("child", child_id));
            };
            PlannedAbsenceAcknowledged {
                child_id,
                school_id,
                absence_id,
                reported_by,
                by,
                at: now,
            }
            .into()
        }
        ChildAction::RequestErasure { child_id } => {
            school.enrolment(child_id)?;
            if !(actor == Actor::Operator || school.is_director(actor)) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "request erasure of a child's data",
                });
            }
            if child.erasure_requested {
                return Err(DomainError::AlreadyDone {
                    what: format!("erasure of child {child_id} requested"),
                });
            }
            ChildErasureRequested {
                child_id,
                school_id,
                requested_by: actor,
                at: now,
            }
            .into()
        }
        ChildAction::RecordErasure { child_id } => {
            if !(actor == Actor::System || actor == Actor::Operator || school.is_director(actor)) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "erase a child's data",
                });
            }
            if !child.erasure_requested {
                return Err(DomainError::invalid(
                    "child_id",
                    format!("no erasure of child {child_id} was requested"),
                ));
            }
            if child.erased {
                return Err(DomainError::AlreadyDone {
                    what: format!("child {child_id} erased"),
                });
            }
            ChildErased {
                child_id,
                by: actor,
                at: now,
            }
            .into()
        }
    };
    Ok(vec![event])
}

/// Applies a child event to the state.
#[must_use]
pub fn evolve(mut state: Child, event: &ChildEvent) -> Child {
    match event {
        ChildEvent::ConsentDecided(e) => state.consents.record(e.purpose, e.guardian_id, e.into()),
        ChildEvent::PlannedAbsenceReported(e) => {
            state.absences.insert(
                e.absence_id,
                Absence {
                    from: e.from,
                    to: e.to,
                    cancelled: false,
                    reported_by: Some(e.reported_by),
                    acknowledged: false,
                },
            );
        }
        ChildEvent::PlannedAbsenceCancelled(e) => {
            if let Some(a) = state.absences.get_mut(&e.absence_id) {
                a.cancelled = true;
            }
        }
        ChildEvent::PlannedAbsenceAcknowledged(e) => {
            if let Some(a) = state.absences.get_mut(&e.absence_id) {
                a.acknowledged = true;
            }
        }
        ChildEvent::ChildErasureRequested(_) => state.erasure_requested = true,
        ChildEvent::ChildErased(_) => state.erased = true,
    }
    state
}
