//! Why a command was refused: one variant per rule, each naming what was refused and which ids.

use crate::actor::Actor;
use crate::ids::{
    ActivityId, ChildId, ConversationId, GroupId, InvitationId, MediaId, MeetingBookingId,
    MeetingRoundId, PersonId, PostId, SchoolId,
};
use crate::purpose::Purpose;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// A command refused by a domain rule. Refusing changes nothing: no events are produced.
///
/// How a caller should react: [`DomainError::NotFound`] → 404; [`DomainError::NotAllowed`] and
/// the membership variants → 403 (or 404 where existence is private); [`DomainError::Invalid`] →
/// 400/422 with the field named; [`DomainError::ActivityFull`] and the `Already*` variants → 409;
/// every other rule → 422 `rule_violated`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field of the command is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as named in the API.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The command refers to something that does not exist (in this school).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What kind of thing (`school`, `group`, `child`, …).
        kind: &'static str,
        /// Its id.
        id: Uuid,
    },
    /// The aggregate already exists; creating it again is refused.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What kind of thing.
        kind: &'static str,
        /// Its id.
        id: Uuid,
    },
    /// The actor's role does not allow this action.
    #[error("{actor} may not {action}")]
    NotAllowed {
        /// Who asked.
        actor: Actor,
        /// What was refused, in words (`create a group`, `remove this post`).
        action: &'static str,
    },
    /// Rule: only staff assigned to a group post to it (the director for the school group),
    /// tag in it or schedule its activities.
    #[error("{actor} is not staff of group {group_id} and may not {action}")]
    NotStaffOfGroup {
        /// Who asked.
        actor: Actor,
        /// The group.
        group_id: GroupId,
        /// What was refused.
        action: &'static str,
    },
    /// Rule: only a guardian of the child changes its consent, reports its absence, or talks
    /// with staff about it.
    #[error("person {person_id} is not a guardian of child {child_id} and may not {action}")]
    NotGuardian {
        /// Who asked.
        person_id: PersonId,
        /// The child.
        child_id: ChildId,
        /// What was refused.
        action: &'static str,
    },
    /// Rule: a guardian only volunteers for activities of a group their child belongs to.
    #[error("person {person_id} is not a guardian in group {group_id}")]
    NotGuardianInGroup {
        /// Who asked.
        person_id: PersonId,
        /// The activity's group.
        group_id: GroupId,
    },
    /// Rule: nobody is linked as guardian without staff approval of an accepted invitation.
    #[error("invitation {invitation_id} has not been approved by staff: guardian not linked")]
    GuardianLinkWithoutApproval {
        /// The invitation that was not approved.
        invitation_id: InvitationId,
    },
    /// Rule: an expired invitation cannot be accepted or approved.
    #[error("invitation {invitation_id} expired at {expired_at}; ask the school for a new one")]
    InvitationExpired {
        /// The invitation.
        invitation_id: InvitationId,
        /// When it expired.
        expired_at: DateTime<Utc>,
    },
    /// Rule: a revoked invitation cannot be accepted or approved.
    #[error("invitation {invitation_id} was revoked; ask the school for a new one")]
    InvitationRevoked {
        /// The invitation.
        invitation_id: InvitationId,
    },
    /// The invitation is not in the state this step needs (accepted before approval, …).
    #[error("invitation {invitation_id} is {status} and cannot be {action}")]
    InvitationNotOpen {
        /// The invitation.
        invitation_id: InvitationId,
        /// Its current status.
        status: &'static str,
        /// The step that was refused (`accepted`, `approved`, `revoked`).
        action: &'static str,
    },
    /// The invitation code does not match.
    #[error("the invitation code is not valid")]
    InvitationCodeMismatch,
    /// Rule: only children of the post's audience can be tagged in its media.
    #[error("child {child_id} is not in the audience of group {group_id} and cannot be tagged")]
    ChildNotInAudience {
        /// The child.
        child_id: ChildId,
        /// The post's group.
        group_id: GroupId,
    },
    /// Rule: a removed (or expired) post or media item cannot be edited, tagged or removed again.
    #[error("{what} was removed and cannot be {action}")]
    ContentRemoved {
        /// The post.
        post_id: PostId,
        /// The media item, when one item (not the whole post) was removed.
        media_id: Option<MediaId>,
        /// `post <id>` or `media item <id>`, for the message.
        what: String,
        /// What was refused.
        action: &'static str,
    },
    /// Rule: a planned absence needs the school's minimum notice.
    #[error("absence of child {child_id} from {from} is reported too late: the school needs {notice_days} day(s) notice, so the earliest day is {earliest}; phone the school for illness")]
    AbsenceNoticeTooShort {
        /// The child.
        child_id: ChildId,
        /// The first day reported.
        from: NaiveDate,
        /// The earliest day that could still be reported now.
        earliest: NaiveDate,
        /// The school's notice period.
        notice_days: u32,
    },
    /// Rule: a volunteer slot is never overbooked.
    #[error("activity {activity_id} is full: all {slots} volunteer slot(s) are taken")]
    ActivityFull {
        /// The activity.
        activity_id: ActivityId,
        /// Its number of slots.
        slots: u32,
    },
    /// The guardian already volunteers for this activity.
    #[error("person {person_id} already volunteers for activity {activity_id}")]
    AlreadyVolunteering {
        /// The activity.
        activity_id: ActivityId,
        /// The guardian.
        person_id: PersonId,
    },
    /// The person does not volunteer for this activity.
    #[error("person {person_id} does not volunteer for activity {activity_id}")]
    NotVolunteering {
        /// The activity.
        activity_id: ActivityId,
        /// The person.
        person_id: PersonId,
    },
    /// Rule: conversations are between staff and the guardians of one child; parents never
    /// message other parents.
    #[error("person {person_id} cannot take part in a conversation about child {child_id}: only staff and that child's guardians can")]
    ParticipantNotAllowed {
        /// The refused participant.
        person_id: PersonId,
        /// The child the conversation is about.
        child_id: ChildId,
    },
    /// A conversation needs at least one staff member and one guardian of the child.
    #[error(
        "a conversation about child {child_id} needs at least one staff member and one guardian"
    )]
    ConversationNeedsStaffAndGuardian {
        /// The child.
        child_id: ChildId,
    },
    /// Only participants post in a conversation.
    #[error("{actor} is not a participant of conversation {conversation_id}")]
    NotParticipant {
        /// Who asked.
        actor: Actor,
        /// The conversation.
        conversation_id: ConversationId,
    },
    /// A consent decision needs a published consent policy to refer to.
    #[error("school {school_id} has not published a consent policy yet")]
    NoConsentPolicy {
        /// The school.
        school_id: SchoolId,
    },
    /// The person already has that place (staff of the school, assigned to the group, …).
    #[error("{what} is already so; nothing to change")]
    AlreadyDone {
        /// What was asked, in words.
        what: String,
    },
    /// Content can only expire once the school's retention period has passed.
    #[error("post {post_id} is kept until {until}; it cannot expire yet")]
    RetentionNotReached {
        /// The post.
        post_id: PostId,
        /// When its retention period ends.
        until: DateTime<Utc>,
    },
    /// Rule: a group archived at a year transition is read-only (no new posts, children,
    /// conversations or activities).
    #[error("group {group_id} was archived at a year transition and takes nothing new")]
    GroupArchived {
        /// The group.
        group_id: GroupId,
    },
    /// A consent decision for a purpose the current policy does not ask for.
    #[error("the consent policy version {policy_version} does not ask consent for {purpose}")]
    PurposeNotInPolicy {
        /// The purpose.
        purpose: Purpose,
        /// The current policy version.
        policy_version: u32,
    },
    /// Rule: a meeting slot is never booked twice (nor a blocked one booked).
    #[error("slot {slot} (starting {starts_at}) of meeting round {round_id} is {reason}")]
    SlotUnavailable {
        /// The round.
        round_id: MeetingRoundId,
        /// The slot's number.
        slot: u32,
        /// When it starts.
        starts_at: DateTime<Utc>,
        /// `taken` or `blocked`.
        reason: &'static str,
    },
    /// Rule: a child never has two bookings in one meeting round.
    #[error("child {child_id} already has booking {booking_id} in meeting round {round_id}")]
    AlreadyBooked {
        /// The round.
        round_id: MeetingRoundId,
        /// The child.
        child_id: ChildId,
        /// Its booking.
        booking_id: MeetingBookingId,
    },
    /// Rule: a family is never in two conversations at once.
    #[error("slot {slot} of meeting round {round_id} overlaps the family's conversation at {other_starts_at}")]
    OverlappingBooking {
        /// The round.
        round_id: MeetingRoundId,
        /// The slot asked for.
        slot: u32,
        /// When the other conversation starts.
        other_starts_at: DateTime<Utc>,
    },
    /// Rule: a cancelled or closed meeting round refuses bookings.
    #[error("meeting round {round_id} is {status}")]
    RoundNotOpen {
        /// The round.
        round_id: MeetingRoundId,
        /// `closed` or `cancelled`.
        status: &'static str,
    },
    /// Rule: after `book_until` guardians no longer book or change (staff still can).
    #[error("booking in meeting round {round_id} closed at {book_until}; ask the school")]
    BookingDeadlinePassed {
        /// The round.
        round_id: MeetingRoundId,
        /// The deadline.
        book_until: DateTime<Utc>,
    },
}

impl DomainError {
    /// Shorthand for [`DomainError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DomainError::NotFound`].
    pub fn not_found(kind: &'static str, id: impl Into<Uuid>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }
}
