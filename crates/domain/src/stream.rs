//! Stream names: `<category>-<uuid>`, one stream per aggregate instance.

use crate::ids::{
    ActivityId, ChildId, ConversationId, InvitationId, MeetingRoundId, PersonId, PostId, SchoolId,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The kind of aggregate a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A school and its roster: staff, groups, enrolments, guardianships, consent policy.
    School,
    /// A person's own facts: quiet hours, erasure.
    Person,
    /// A child's own facts: consent decisions, planned absences, erasure.
    Child,
    /// One invitation of a parent.
    Invitation,
    /// One post with its media.
    Post,
    /// One conversation.
    Conversation,
    /// One activity with volunteer slots.
    Activity,
    /// The access log of one subject (who read its data).
    Access,
    /// One meeting round.
    Meeting,
    /// A person's calendar feed key.
    Calendar,
}

impl Category {
    /// Every category.
    pub const ALL: [Self; 10] = [
        Self::School,
        Self::Person,
        Self::Child,
        Self::Invitation,
        Self::Post,
        Self::Conversation,
        Self::Activity,
        Self::Access,
        Self::Meeting,
        Self::Calendar,
    ];

    /// The stream-name prefix, e.g. `school`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::School => "school",
            Self::Person => "person",
            Self::Child => "child",
            Self::Invitation => "invitation",
            Self::Post => "post",
            Self::Conversation => "conversation",
            Self::Activity => "activity",
            Self::Access => "access",
            Self::Meeting => "meeting",
            Self::Calendar => "calendar",
        }
    }
}

/// A validated stream name such as `child-0190…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName {
    category: Category,
    id: Uuid,
}

impl StreamName {
    /// The stream of `category` for the aggregate `id`.
    #[must_use]
    pub const fn new(category: Category, id: Uuid) -> Self {
        Self { category, id }
    }
    /// The stream of a school (and its roster).
    #[must_use]
    pub const fn school(id: SchoolId) -> Self {
        Self::new(Category::School, id.as_uuid())
    }
    /// The stream of a person.
    #[must_use]
    pub const fn person(id: PersonId) -> Self {
        Self::new(Category::Person, id.as_uuid())
    }
    /// The stream of a child.
    #[must_use]
    pub const fn child(id: ChildId) -> Self {
        Self::new(Category::Child, id.as_uuid())
    }
    /// The stream of an invitation.
    #[must_use]
    pub const fn invitation(id: InvitationId) -> Self {
        Self::new(Category::Invitation, id.as_uuid())
    }
    /// The stream of a post.
    #[must_use]
    pub const fn post(id: PostId) -> Self {
        Self::new(Category::Post, id.as_uuid())
    }
    /// The stream of a conversation.
    #[must_use]
    pub const fn conversation(id: ConversationId) -> Self {
        Self::new(Category::Conversation, id.as_uuid())
    }
    /// The stream of an activity.
    #[must_use]
    pub const fn activity(id: ActivityId) -> Self {
        Self::new(Category::Activity, id.as_uuid())
    }
    /// The stream of a meeting round.
    #[must_use]
    pub const fn meeting(id: MeetingRoundId) -> Self {
        Self::new(Category::Meeting, id.as_uuid())
    }
    /// The calendar-key stream of a person.
    #[must_use]
    pub const fn calendar(id: PersonId) -> Self {
        Self::new(Category::Calendar, id.as_uuid())
    }
    /// The access-log stream of a subject.
    #[must_use]
    pub const fn access(subject: Uuid) -> Self {
        Self::new(Category::Access, subject)
    }
    /// Which kind of aggregate this stream holds.
    #[must_use]
    pub const fn category(&self) -> Category {
        self.category
    }
    /// The aggregate's id.
    #[must_use]
    pub const fn id(&self) -> Uuid {
        self.id
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.category.as_str(), self.id.hyphenated())
    }
}

/// A stream name that is not `<category>-<uuid>` with a known category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed stream name {0:?}: expected <category>-<uuid> with category one of school, person, child, invitation, post, conversation, activity, access, meeting, calendar")]
pub struct MalformedStreamName(pub String);

impl FromStr for StreamName {
    type Err = MalformedStreamName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MalformedStreamName(s.to_owned());
        let (prefix, id) = s.split_once('-').ok_or_else(bad)?;
        let category = Category::ALL
            .into_iter()
            .find(|c| c.as_str() == prefix)
            .ok_or_else(bad)?;
        // Only the canonical hyphenated lowercase form, so one stream has one name.
        let id = Uuid::parse_str(id).map_err(|_| bad())?;
        let name = Self { category, id };
        if name.to_string() == s {
            Ok(name)
        } else {
            Err(bad())
        }
    }
}

impl Serialize for StreamName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_round_trip_and_reject_malformed_ones() {
        let id = ChildId::generate();
        let name = StreamName::child(id);
        let text = name.to_string();
        assert!(text.starts_with("child-"));
        assert_eq!(text.parse::<StreamName>(), Ok(name));
        for bad in [
            "",
            "child",
            "child-",
            "kid-0190a6f2-7c3e-7000-8000-000000000000",
            "child-not-a-uuid",
            "child-0190A6F2-7C3E-7000-8000-000000000000",
        ] {
            assert!(
                bad.parse::<StreamName>().is_err(),
                "{bad:?} must be refused"
            );
        }
    }
}
