//! The school-year transition: one plan moves every child of a group to another group (a new
//! one, made by name, or an existing one) or out of the school, and archives the groups that
//! end. [`plan_transition`] says what the plan changes on the roster as it is; deciding the
//! plan writes exactly those changes as events, so a preview (dry run) and the application
//! agree, and applying the same plan again changes nothing.

use super::{GroupArchived, GroupCreated, GroupKind, School, SchoolEvent};
use crate::actor::Actor;
use crate::error::DomainError;
use crate::ids::{ChildId, GroupId, PersonId};
use crate::school::{ChildMoved, ChildUnenrolled};
use crate::validate;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where a group's children go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An existing open class group.
    Group(GroupId),
    /// A group of [`YearTransition::new_groups`], by name.
    NewGroup(String),
}

/// What happens to one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// The class group.
    pub group_id: GroupId,
    /// Where its children (leavers aside) go; `None`: they stay.
    pub children_to: Option<Destination>,
    /// Children of the group who leave the school.
    pub leavers: Vec<ChildId>,
    /// Whether the group ends (it must be empty once its children moved or left).
    pub archive: bool,
}

/// A year transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearTransition {
    /// The first day of the new school year.
    pub effective_on: NaiveDate,
    /// Groups to make, by name, each with the id it gets unless an open class group of that
    /// name exists already (then that group is meant).
    pub new_groups: Vec<(GroupId, String)>,
    /// What happens to each group.
    pub groups: Vec<GroupPlan>,
}

/// One change a transition makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionChange {
    /// A new class group.
    GroupCreated {
        /// The group.
        group_id: GroupId,
        /// Its name.
        name: String,
    },
    /// A child moves to another group; their guardians lose access to the old group (and gain
    /// the new one).
    ChildMoved {
        /// The child.
        child_id: ChildId,
        /// The old group.
        from_group_id: GroupId,
        /// The new group.
        to_group_id: GroupId,
        /// Guardians who lose access to the old group.
        guardians_leaving_group: Vec<PersonId>,
    },
    /// A child leaves the school; their guardians lose access to them, and those with no other
    /// child at the school to the school.
    ChildLeft {
        /// The child.
        child_id: ChildId,
        /// Their group.
        from_group_id: GroupId,
        /// The child's guardians, who lose access to the child.
        guardians_unlinked: Vec<PersonId>,
        /// Of those, the ones with no other child at the school.
        guardians_leaving_school: Vec<PersonId>,
    },
    /// A group ends: read-only from then on.
    GroupArchived {
        /// The group.
        group_id: GroupId,
    },
}

/// The changes `plan` makes on `state`, in the order they are written: new groups, moves,
/// leavers, archived groups. A change already made (a child already moved or gone, a group
/// already made or archived) is no change. Only a director plans a transition.
///
/// # Errors
/// `NotAllowed` for anyone but a director; `NotFound` for a group or child not of this school;
/// `Invalid` for a plan that names a group twice, sends children to the group they are in or to
/// a group not in the plan's new groups, names as leaver a child of another group, or archives a
/// group that still has children afterwards; `GroupArchived` for children sent to an archived
/// group.
pub fn plan_transition(
    state: &School,
    actor: Actor,
    plan: &YearTransition,
) -> Result<Vec<TransitionChange>, DomainError> {
    Ok(transition(state, actor, plan)?.0)
}

/// [`plan_transition`], with the events that make the changes (what deciding
/// [`SchoolAction::YearTransition`](super::SchoolAction::YearTransition) writes).
///
/// # Errors
/// As [`plan_transition`].
pub fn transition(
    state: &School,
    actor: Actor,
    plan: &YearTransition,
) -> Result<(Vec<TransitionChange>, Vec<SchoolEvent>), DomainError> {
    let school_id = state.id()?;
    if !state.is_director(actor) {
        return Err(DomainError::NotAllowed {
            actor,
            action: "plan a school-year transition",
        });
    }
    let mut changes = Vec::new();
    let mut events: Vec<SchoolEvent> = Vec::new();

    // New groups: by name, an open class group of that name being the same group.
    let mut by_name: BTreeMap<String, GroupId> = BTreeMap::new();
    for (group_id, name) in &plan.new_groups {
        let name = validate::text("new_groups.name", name, 100)?;
        if by_name.contains_key(&name) {
            return Err(DomainError::invalid(
                "new_groups",
                format!("{name:?} is listed twice"),
            ));
        }
        let existing = state
            .groups
            .iter()
            .find(|(_, g)| g.kind == GroupKind::Class && !g.archived && g.name == name)
            .map(|(id, _)| *id);
        let id = match existing {
            Some(id) => id,
            None => {
                if state.groups.contains_key(group_id) {
                    return Err(DomainError::AlreadyExists {
                        kind: "group",
                        id: (*group_id).into(),
                    });
                }
                changes.push(TransitionChange::GroupCreated {
                    group_id: *group_id,
                    name: name.clone(),
                });
                events.push(
                    GroupCreated {
                        school_id,
                        group_id: *group_id,
                        name: name.clone(),
                    }
                    .into(),
                );
                *group_id
            }
        };
        by_name.insert(name, id);
    }

    // Each group: where its children go, who leaves, whether it ends.
    let mut seen = BTreeSet::new();
    let mut moves = Vec::new();
    let mut leaving = Vec::new();
    let mut archived = Vec::new();
    for g in &plan.groups {
        if !seen.insert(g.group_id) {
            return Err(DomainError::invalid(
                "groups",
                format!("group {} is listed twice", g.group_id),
            ));
        }
        let group = state.group(g.group_id)?;
        if group.kind != GroupKind::Class {
            return Err(DomainError::invalid(
                "groups.group_id",
                "only class groups take part in a year transition",
            ));
        }
        let leavers: BTreeSet<ChildId> = g.leavers.iter().copied().collect();
        for child in &leavers {
            match state.children.get(child) {
                // Gone already: nothing to do.
                None => {}
                Some(e) if e.group_id == g.group_id => leaving.push((*child, g.group_id)),
                Some(_) => {
                    return Err(DomainError::invalid(
                        "groups.leavers",
                        format!("child {child} is not in group {}", g.group_id),
                    ))
                }
            }
        }
        let staying: Vec<ChildId> = state
            .audience_children(g.group_id)
            .filter(|c| !leavers.contains(c))
            .collect();
        if let Some(to) = &g.children_to {
            let to = match to {
                Destination::Group(id) => *id,
                Destination::NewGroup(name) => *by_name.get(name.trim()).ok_or_else(|| {
                    DomainError::invalid(
                        "groups.children_to_new",
                        format!("{name:?} is not one of new_groups"),
                    )
                })?,
            };
            if to == g.group_id {
                return Err(DomainError::invalid(
                    "groups.children_to",
                    "children move to another group than their own",
                ));
            }
            // A group made by this plan is open and a class group; any other must be.
            if !by_name.values().any(|id| *id == to) || state.groups.contains_key(&to) {
                let target = state.open_group(to)?;
                if target.kind != GroupKind::Class {
                    return Err(DomainError::invalid(
                        "groups.children_to",
                        "children are placed in a class group, not in the school group",
                    ));
                }
            }
            moves.extend(staying.iter().map(|c| (*c, g.group_id, to)));
        } else if g.archive && !staying.is_empty() {
            return Err(DomainError::invalid(
                "groups.archive",
                format!(
                    "group {} still has {} children: move them or name them as leavers",
                    g.group_id,
                    staying.len()
                ),
            ));
        }
        if g.archive && !group.archived {
            archived.push(g.group_id);
        }
    }

    if let Some((_, _, to)) = moves.iter().find(|(_, _, to)| archived.contains(to)) {
        return Err(DomainError::invalid(
            "groups.children_to",
            format!("group {to} is archived by the same plan: it takes no children"),
        ));
    }
    for (child_id, from, to) in moves {
        // Every child of the group moves (leavers aside), so no sibling keeps a guardian there.
        changes.push(TransitionChange::ChildMoved {
            child_id,
            from_group_id: from,
            to_group_id: to,
            guardians_leaving_group: state.children[&child_id]
                .guardians
                .iter()
                .copied()
                .collect(),
        });
        events.push(
            ChildMoved {
                school_id,
                child_id,
                from_group_id: from,
                to_group_id: to,
            }
            .into(),
        );
    }
    let leavers: BTreeSet<ChildId> = leaving.iter().map(|(c, _)| *c).collect();
    for (child_id, from) in &leaving {
        let guardians: Vec<PersonId> = state.children[child_id].guardians.iter().copied().collect();
        let stays_at_school = |p: &PersonId| {
            state
                .children
                .iter()
                .any(|(c, e)| !leavers.contains(c) && e.guardians.contains(p))
        };
        changes.push(TransitionChange::ChildLeft {
            child_id: *child_id,
            from_group_id: *from,
            guardians_leaving_school: guardians
                .iter()
                .copied()
                .filter(|p| !stays_at_school(p))
                .collect(),
            guardians_unlinked: guardians,
        });
        events.push(
            ChildUnenrolled {
                school_id,
                child_id: *child_id,
            }
            .into(),
        );
    }
    for group_id in archived {
        changes.push(TransitionChange::GroupArchived { group_id });
        events.push(
            GroupArchived {
                school_id,
                group_id,
                effective_on: plan.effective_on,
            }
            .into(),
        );
    }
    Ok((changes, events))
}
