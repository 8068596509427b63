//! Identifiers: one newtype per kind of thing, all UUID v7 (time-ordered).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh UUID v7 id. Ids are minted by the caller and handed to commands,
            /// so deciders stay pure.
            #[must_use]
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (from storage or a request path).
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

id_type!(
    /// A school.
    SchoolId
);
id_type!(
    /// A group: a class group or the whole-school group.
    GroupId
);
id_type!(
    /// A person: a staff member or a guardian.
    PersonId
);
id_type!(
    /// A child (pupil).
    ChildId
);
id_type!(
    /// An invitation of a parent for a child.
    InvitationId
);
id_type!(
    /// A post in a group.
    PostId
);
id_type!(
    /// One photo or video, attached to a post.
    MediaId
);
id_type!(
    /// A conversation between staff and the guardians of a child.
    ConversationId
);
id_type!(
    /// One message in a conversation.
    MessageId
);
id_type!(
    /// A calendar activity with volunteer slots.
    ActivityId
);
id_type!(
    /// A planned absence of a child.
    AbsenceId
);
id_type!(
    /// A round of parent–teacher conversations.
    MeetingRoundId
);
id_type!(
    /// One booked conversation in a meeting round.
    MeetingBookingId
);
