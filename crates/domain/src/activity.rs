//! Activities in a group's calendar with volunteer slots that are never overbooked.

use crate::actor::Command;
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ActivityId, GroupId, PersonId, SchoolId};
use crate::school::School;
use crate::validate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The most volunteer slots one activity has.
pub const MAX_SLOTS: u32 = 200;

/// An activity's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// The activity, once scheduled.
    pub activity_id: Option<ActivityId>,
    /// Its group.
    pub group_id: Option<GroupId>,
    /// When it starts.
    pub starts_at: Option<DateTime<Utc>>,
    /// Number of volunteer slots.
    pub slots: u32,
    /// Who volunteers.
    pub volunteers: BTreeSet<PersonId>,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

/// Staff scheduled an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityScheduled {
    /// The activity.
    pub activity_id: ActivityId,
    /// The school.
    pub school_id: SchoolId,
    /// The group.
    pub group_id: GroupId,
    /// Its title.
    pub title: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Number of volunteer slots.
    pub volunteer_slots: u32,
    /// Who scheduled it.
    pub by: PersonId,
}

/// A guardian took a volunteer slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolunteerSignedUp {
    /// The activity.
    pub activity_id: ActivityId,
    /// The guardian.
    pub person_id: PersonId,
}

/// A guardian gave back their slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolunteerWithdrew {
    /// The activity.
    pub activity_id: ActivityId,
    /// The guardian.
    pub person_id: PersonId,
}

/// Staff cancelled the activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityCancelled {
    /// The activity.
    pub activity_id: ActivityId,
    /// Who cancelled it.
    pub by: PersonId,
}

event_enum! {
    /// Events of an activity stream.
    pub enum ActivityEvent {
        /// See [`ActivityScheduled`].
        ActivityScheduled,
        /// See [`VolunteerSignedUp`].
        VolunteerSignedUp,
        /// See [`VolunteerWithdrew`].
        VolunteerWithdrew,
        /// See [`ActivityCancelled`].
        ActivityCancelled,
    }
}

/// What can be asked of an activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityAction {
    /// Schedule an activity (staff of the group).
    Schedule {
        /// The new activity's id.
        activity_id: ActivityId,
        /// The group.
        group_id: GroupId,
        /// Its title.
        title: String,
        /// Start.
        starts_at: DateTime<Utc>,
        /// End.
        ends_at: DateTime<Utc>,
        /// Number of volunteer slots.
        volunteer_slots: u32,
    },
    /// Take a volunteer slot (a guardian in the group).
    SignUp,
    /// Give back one's slot.
    Withdraw,
    /// Cancel the activity (staff of the group).
    Cancel,
}

/// The state `decide` needs: the activity and its school's roster.
#[derive(Debug, Clone, Copy)]
pub struct ActivityContext<'a> {
    /// The activity's state.
    pub activity: &'a Activity,
    /// The school's roster.
    pub school: &'a School,
}

/// Decides a command about an activity.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
pub fn decide(
    ctx: &ActivityContext<'_>,
    command: Command<ActivityAction>,
    now: DateTime<Utc>,
) -> Result<Vec<ActivityEvent>, DomainError> {
    let ActivityContext { activity, school } = *ctx;
    let Command { actor, action } = command;
    if let ActivityAction::Schedule {
        activity_id,
        group_id,
        title,
        starts_at,
        ends_at,
        volunteer_slots,
    } = action
    {
        if activity.activity_id.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "activity",
                id: activity_id.into(),
            });
        }
        let school_id = school.id()?;
        school.group(group_id)?;
        let by = match actor.person() {
            Some(p) if school.is_group_staff(actor, group_id) => p,
            _ => {
                return Err(DomainError::NotStaffOfGroup {
                    actor,
                    group_id,
                    action: "schedule an activity",
                })
            }
        };
        school.open_group(group_id)?;
        if ends_at <= starts_at {
            return Err(DomainError::invalid("ends_at", "must be after starts_at"));
        }
        if volunteer_slots > MAX_SLOTS {
            return Err(DomainError::invalid(
                "volunteer_slots",
                format!("must be at most {MAX_SLOTS}"),
            ));
        }
        return Ok(vec![ActivityScheduled {
            activity_id,
            school_id,
            group_id,
            title: validate::text("title", &title, 200)?,
            starts_at,
            ends_at,
            volunteer_slots,
            by,
        }
        .into()]);
    }
    let (Some(activity_id), Some(group_id)) = (activity.activity_id, activity.group_id) else {
        return Err(DomainError::not_found("activity", uuid::Uuid::nil()));
    };
    if activity.cancelled {
        return Err(DomainError::invalid(
            "activity",
            format!("activity {activity_id} was cancelled"),
        ));
    }
    let event: ActivityEvent = match action {
        ActivityAction::Schedule { .. } => {
            return Err(DomainError::AlreadyExists {
                kind: "activity",
                id: activity_id.into(),
            })
        }
        ActivityAction::SignUp => {
            let person_id = match actor.person() {
                Some(p) if school.is_guardian_in_group(p, group_id) => p,
                Some(p) => {
                    return Err(DomainError::NotGuardianInGroup {
                        person_id: p,
                        group_id,
                    })
                }
                None => {
                    return Err(DomainError::NotAllowed {
                        actor,
                        action: "volunteer",
                    })
                }
            };
            if activity.starts_at.is_some_and(|s| s <= now) {
                return Err(DomainError::invalid(
                    "activity",
                    format!("activity {activity_id} has already started"),
                ));
            }
            if activity.volunteers.contains(&person_id) {
                return Err(DomainError::AlreadyVolunteering {
                    activity_id,
                    person_id,
                });
            }
            // Rule: a volunteer slot is never overbooked.
            if activity.volunteers.len() >= activity.slots as usize {
                return Err(DomainError::ActivityFull {
                    activity_id,
                    slots: activity.slots,
                });
            }
            VolunteerSignedUp {
                activity_id,
                person_id,
            }
            .into()
        }
        ActivityAction::Withdraw => match actor.person() {
            Some(person_id) if activity.volunteers.contains(&person_id) => VolunteerWithdrew {
                activity_id,
                person_id,
            }
            .into(),
            Some(person_id) => {
                return Err(DomainError::NotVolunteering {
                    activity_id,
                    person_id,
                })
            }
            None => {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "withdraw as volunteer",
                })
            }
        },
        ActivityAction::Cancel => match actor.person() {
            Some(by) if school.is_group_staff(actor, group_id) => {
                ActivityCancelled { activity_id, by }.into()
            }
            _ => {
                return Err(DomainError::NotStaffOfGroup {
                    actor,
                    group_id,
                    action: "cancel an activity",
                })
            }
        },
    };
    Ok(vec![event])
}

/// Applies an activity event to the state.
#[must_use]
pub fn evolve(mut state: Activity, event: &ActivityEvent) -> Activity {
    match event {
        ActivityEvent::ActivityScheduled(e) => {
            state.activity_id = Some(e.activity_id);
            state.group_id = Some(e.group_id);
            state.starts_at = Some(e.starts_at);
            state.slots = e.volunteer_slots;
        }
        ActivityEvent::VolunteerSignedUp(e) => {
            state.volunteers.insert(e.person_id);
        }
        ActivityEvent::VolunteerWithdrew(e) => {
            state.volunteers.remove(&e.person_id);
        }
        ActivityEvent::ActivityCancelled(_) => state.cancelled = true,
    }
    state
}
