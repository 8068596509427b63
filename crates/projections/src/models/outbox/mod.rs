//! The notification outbox: who is told of what, on which channel, and when — by the
//! recipient's notification preferences, their quiet hours and their daily digest time — plus
//! the availability parents see.
//!
//! Who is told (the roster, guardianships and consent as of the event in the log):
//! - `post`: a new post notifies its audience's staff but the author, and each guardian in its
//!   audience the post shows something: its text, or a media item they may see by the feed's
//!   rule ([`who_may_see`](kring_domain::visibility::who_may_see)). A post with no text whose
//!   every photo is withheld from a guardian does not notify them.
//! - `message`: a message posted in a conversation notifies each *other* participant who is
//!   still on their side of it: staff still on the conversation's school's staff, guardians
//!   still linked to the conversation's child. The author is never notified.
//! - `activity_created`: the guardians in the activity's group.
//! - `activity_reminder`: each volunteer, at 18:00 ([`REMINDER_AT`]) the day before the
//!   activity in their time zone (at once when they sign up later; none once it started); a
//!   withdrawal or a cancellation before that time takes the reminder back.
//! - `invitation_approved`: the guardian linked.
//! - `consent_needed`: a consent-policy version that gives a purpose a new meaning (a reworded or
//!   a newly asked purpose; never the first version) notifies every guardian of a child of the
//!   school, once; which purposes need a decision is the consent read model's answer.
//! - `absence_reported`: the staff assigned to the child's group.
//! - `absence_acknowledged`: the guardian who reported the absence.
//! - `meeting_booked`, `meeting_changed`: a booking made or assigned; moved, cancelled, or its
//!   round cancelled — the guardians of the booking's children as of the event, but the person
//!   who did it (a round's cancellation: each guardian once).
//! - `meeting_reminder`: every guardian of a booking's children, by the activity reminder's rule
//!   (18:00 the day before the slot, in their time zone); a move takes back the reminders not
//!   released yet and makes new ones, a cancellation of the booking or round takes them back.
//!
//! How and when ([`EffectivePreferences`], as of the event): the channel of the kind is the
//! recipient's own choice, else their school's default, else `push`. `push` and `email` ones
//! are released at once, or — while the recipient is in quiet hours (their own schedule, staff
//! and guardians alike, or else for staff the school's default) — when that quiet period ends
//! ([`QuietHours::quiet_until`], chained periods counting as one); [`due`] offers them.
//! `digest` ones are released at the recipient's next digest time
//! ([`next_digest`](kring_domain::person::next_digest)), so all of a day's share one release
//! time, and the delivery worker (`kring_api::delivery::worker`, the one place digests are
//! grouped) sends those of one recipient and one release time as one message. `off` ones are
//! never sent, but [`undelivered_of`] still lists them for the recipient's own app.
//!
//! How long ([`RETENTION_DAYS`]): the outbox keeps a notification while its release time is at
//! most that many days before the newest event the read model has applied — the log's time (the
//! events' recorded `occurred_at`), never the clock, so that the live projection and a rebuild
//! keep exactly the same rows from the same log. The release time, not the time of the event,
//! is a notification's age: a reminder for tomorrow, a notification held for quiet hours or
//! waiting for its digest is in the window until it has been released for that long, and so is
//! everything the delivery worker may still send (its late-delivery limit counts from the
//! release time too, and is far shorter). The live projection deletes what falls out of the
//! window as the log moves on, once per batch (one statement on the index by release time); a
//! catch-up or a rebuild, told the newest event's time before it starts
//! ([`Projection::log_head`](crate::Projection::log_head)), never writes what that event puts
//! out of the window. Older notifications are still in the log; the posts, messages and
//! meetings they are about stay in their own read models.
//!
//! Rules:
//! - A notification carries ids only, never a message's or a post's text.
//! - Its id is derived from what it is about (the post, message, activity, invitation or
//!   absence; the event of a policy version, a volunteer's sign-up or an acknowledgement) and the recipient
//!   ([`NotificationId`]), so a rebuild of the read model yields the same ids.
//! - Deliveries are recorded by the delivery worker in `notification_deliveries`, a table outside
//!   the projection's generations ([`ensure_delivery_table`], [`mark_delivered`]): a rebuild keeps
//!   them, and [`due`] never offers a delivered notification again.
//!
//! [`EffectivePreferences`]: kring_domain::person::EffectivePreferences
//! [`REMINDER_AT`]: kring_domain::person::REMINDER_AT

use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::person::QuietHours;
pub use kring_domain::person::{Channel, NotificationKind};
use kring_domain::{
    AbsenceId, ActivityId, ChildId, ConversationId, GroupId, InvitationId, MeetingBookingId,
    MeetingRoundId, MessageId, PersonId, PostId, SchoolId,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

mod deliveries;
mod project;
mod query;

pub use deliveries::{ensure_delivery_table, mark_delivered};
pub use project::OutboxProjection;
pub use query::{availability, due, held, kept_since, notification, undelivered_of, Availability};

/// Its name.
pub const NAME: &str = "outbox";

/// How many days the outbox keeps a notification after its release time, counted back from the
/// newest event it has applied (see the module's documentation). Part of the read model's
/// definition: it is in the outbox's fingerprint, so a version with another window rebuilds the
/// read model when it starts instead of mixing two windows in one generation.
pub const RETENTION_DAYS: u64 = 30;

/// [`RETENTION_DAYS`] as a duration.
#[must_use]
#[allow(clippy::cast_possible_wrap)] // 30
pub fn retention() -> chrono::Duration {
    chrono::Duration::days(RETENTION_DAYS as i64)
}

/// When the quiet period covering `at` ends under the stored `schedule`, if one does.
fn quiet_until(
    schedule: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    let Some(schedule) = schedule else {
        return Ok(None);
    };
    let schedule: QuietHours = serde_json::from_str(schedule)?;
    Ok(schedule.quiet_until(at))
}

/// How a channel name stored with a notification reads when it is not one of [`Channel`]'s:
/// `push`, the built-in default of every kind (see [`read_channel`]).
pub const UNKNOWN_CHANNEL_READS_AS: Channel = Channel::Push;

/// The channel stored with a notification. The outbox writes only [`Channel`]'s own names (the
/// write side cannot make another), so another name comes from a newer version of Kring writing
/// the same tables during a rolling upgrade, or from a damaged row. Such a notification must not
/// be dropped in silence, nor break the recipient's whole list: it reads as
/// [`UNKNOWN_CHANNEL_READS_AS`], so it is still sent and listed, and the delivery worker reports
/// the name as an error when it comes to it.
#[must_use]
pub fn read_channel(stored: &str) -> Channel {
    stored.parse().unwrap_or(UNKNOWN_CHANNEL_READS_AS)
}

/// A notification's id: what it is about (the message, or the event that published a policy
/// version) and its recipient. Derived, never minted, so a rebuild of the outbox yields the same
/// ids and recorded deliveries still match. Written as `<about>:<recipient id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NotificationId {
    /// The message, or the policy version's event.
    pub about: Uuid,
    /// The person told about it.
    pub recipient_id: PersonId,
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.about, self.recipient_id)
    }
}

impl FromStr for NotificationId {
    type Err = ProjectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProjectionError::Invalid(format!("{s:?} is not a notification id"));
        let (about, recipient) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            about: about.parse().map_err(|_| bad())?,
            recipient_id: recipient.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for NotificationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NotificationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One notification: ids and times only, never a message's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Its id.
    pub id: NotificationId,
    /// The global position of the event that caused it.
    pub position: u64,
    /// Who is told.
    pub recipient_id: PersonId,
    /// What about.
    pub kind: NotificationKind,
    /// The conversation (a message).
    pub conversation_id: Option<ConversationId>,
    /// The message (a message).
    pub message_id: Option<MessageId>,
    /// The school (a consent decision needed).
    pub school_id: Option<SchoolId>,
    /// The policy version that asks for it (a consent decision needed).
    pub policy_version: Option<u32>,
    /// When what it is about happened.
    pub created_at: DateTime<Utc>,
    /// When it may be delivered: `created_at`, or the end of the recipient's quiet period.
    pub release_at: DateTime<Utc>,
    /// How it reaches the recipient, by their preferences as of its event: `push` and `email`
    /// ones are sent one by one ([`due`]), `digest` ones gathered per recipient and release
    /// time by the delivery worker, `off` ones never (only listed in the recipient's app).
    pub channel: Channel,
    /// The post (a post).
    pub post_id: Option<PostId>,
    /// The group (a post, an activity, a reported absence).
    pub group_id: Option<GroupId>,
    /// The activity (an activity created, a reminder).
    pub activity_id: Option<ActivityId>,
    /// The invitation (an invitation approved).
    pub invitation_id: Option<InvitationId>,
    /// The child (a message, an invitation approved, an absence).
    pub child_id: Option<ChildId>,
    /// The absence (an absence reported).
    pub absence_id: Option<AbsenceId>,
    /// The meeting round (the meeting kinds).
    pub round_id: Option<MeetingRoundId>,
    /// The booking (the meeting kinds, but a round's cancellation).
    pub booking_id: Option<MeetingBookingId>,
    /// Whether the delivery worker has delivered it.
    pub delivered: bool,
}

impl Notification {
    /// Whether it was held for the recipient's quiet hours (a digest's wait is not a hold).
    #[must_use]
    pub fn was_held(&self) -> bool {
        self.channel != Channel::Digest && self.release_at > self.created_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_id_reads_back_as_written() {
        let id = NotificationId {
            about: uuid::Uuid::now_v7(),
            recipient_id: PersonId::from_uuid(uuid::Uuid::now_v7()),
        };
        assert_eq!(id.to_string().parse::<NotificationId>().ok(), Some(id));
        assert!("nonsense".parse::<NotificationId>().is_err());
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NotificationId>(&json).ok(), Some(id));
    }

    #[test]
    fn an_unknown_stored_channel_reads_as_push_and_a_known_one_as_itself() {
        for c in Channel::ALL {
            assert_eq!(read_channel(c.as_str()), c);
        }
        for unknown in ["sms", "", "PUSH", "off "] {
            assert_eq!(read_channel(unknown), Channel::Push, "{unknown:?}");
        }
    }
}
