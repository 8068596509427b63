//! "Who may see this media item?" — the rule of DESIGN.md as a pure function, with its
//! explanation. The projections reuse it; nothing else decides visibility.
//!
//! Staff of the audience always see it. A parent in the audience sees it iff every tagged child
//! is their own child or has effective consent for the audience's purpose
//! (`group_communication` for a class group, `school_communication` for the school group),
//! counting only decisions made since the school's policy gave the purpose its current meaning.
//! Removed or expired content is visible to nobody.

use crate::child::Child;
use crate::error::DomainError;
use crate::ids::{ChildId, MediaId, PersonId};
use crate::post::Post;
use crate::purpose::Purpose;
use crate::school::School;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether consent holds for (child, purpose), counting the decisions made under policy version
/// `counting_from` or later — answered from event-sourced child state or a read model built
/// from it.
pub trait ConsentLookup {
    /// Whether consent for `purpose` is effective for `child`.
    fn is_effective(&self, child: ChildId, purpose: Purpose, counting_from: u32) -> bool;
}

impl ConsentLookup for BTreeMap<ChildId, Child> {
    fn is_effective(&self, child: ChildId, purpose: Purpose, counting_from: u32) -> bool {
        self.get(&child)
            .is_some_and(|c| c.consents.is_effective(purpose, counting_from))
    }
}

impl<F: Fn(ChildId, Purpose, u32) -> bool> ConsentLookup for F {
    fn is_effective(&self, child: ChildId, purpose: Purpose, counting_from: u32) -> bool {
        self(child, purpose, counting_from)
    }
}

/// Why someone may see a media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewReason {
    /// Staff of the audience.
    Staff,
    /// A parent in the audience; every tagged child (none of theirs) has consent.
    Audience,
    /// A parent in the audience whose own child is tagged; every other tagged child has consent.
    OwnChild,
}

/// A person who may see the item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// The person.
    pub person_id: PersonId,
    /// Why.
    pub reason: ViewReason,
}

/// A child and purpose whose missing consent withholds the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WithheldBecause {
    /// The tagged child without consent.
    pub child_id: ChildId,
    /// The purpose that lacks consent.
    pub purpose: Purpose,
}

/// A parent in the audience who may not see the item, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    /// The parent.
    pub person_id: PersonId,
    /// Each tagged child (not theirs) without consent.
    pub because: Vec<WithheldBecause>,
}

/// The answer for one media item, sorted by person id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaVisibility {
    /// The media item.
    pub media_id: MediaId,
    /// Who may see it.
    pub viewers: Vec<Viewer>,
    /// Who is withheld from it.
    pub withheld: Vec<Withheld>,
}

impl MediaVisibility {
    /// Whether `person` may see the item.
    #[must_use]
    pub fn may_see(&self, person: PersonId) -> bool {
        self.viewers.iter().any(|v| v.person_id == person)
    }
}

/// Who may see `media_id` of `post`, given the school's roster and the children's consent.
///
/// # Errors
/// `NotFound` when the post has no such media item.
pub fn who_may_see(
    school: &School,
    post: &Post,
    media_id: MediaId,
    consent: &impl ConsentLookup,
) -> Result<MediaVisibility, DomainError> {
    let item = post
        .media
        .get(&media_id)
        .ok_or_else(|| DomainError::not_found("media item", media_id))?;
    let mut answer = MediaVisibility {
        media_id,
        viewers: Vec::new(),
        withheld: Vec::new(),
    };
    let Some(group_id) = post.group_id else {
        return Ok(answer);
    };
    if !post.media_is_live(media_id) || !school.groups.contains_key(&group_id) {
        return Ok(answer);
    }
    let purpose = school.purpose_of(group_id)?;
    // Decisions count from the version that gave the purpose its meaning; none when the
    // school's policy does not ask for it.
    let counting_from = school.policy.as_ref().and_then(|p| p.counts_from(purpose));
    let staff = school.audience_staff(group_id);
    let mut viewers: BTreeMap<PersonId, ViewReason> =
        staff.iter().map(|p| (*p, ViewReason::Staff)).collect();
    for guardian in school.audience_guardians(group_id).into_keys() {
        if staff.contains(&guardian) {
            continue;
        }
        let mut own = false;
        let mut because = Vec::new();
        for child in &item.tagged {
            if school.is_guardian(guardian, *child) {
                own = true;
            } else if !counting_from.is_some_and(|from| consent.is_effective(*child, purpose, from))
            {
                because.push(WithheldBecause {
                    child_id: *child,
                    purpose,
                });
            }
        }
        if because.is_empty() {
            let reason = if own {
                ViewReason::OwnChild
            } else {
                ViewReason::Audience
            };
            viewers.insert(guardian, reason);
        } else {
            answer.withheld.push(Withheld {
                person_id: guardian,
                because,
            });
        }
    }
    answer.viewers = viewers
        .into_iter()
        .map(|(person_id, reason)| Viewer { person_id, reason })
        .collect();
    Ok(answer)
}
