//! The event catalogue as stored: stable type names, schema versions, JSON payloads, and the
//! upcasters that turn an older schema version into the current one on read.

use crate::{
    access::AccessEvent, activity::ActivityEvent, calendar::CalendarEvent, child::ChildEvent,
    conversation::ConversationEvent, invitation::InvitationEvent, meeting::MeetingEvent,
    person::PersonEvent, post::PostEvent, school::SchoolEvent,
};
use serde_json::Value;

/// Declares an aggregate's event enum from its event structs: one newtype variant per struct,
/// named like the struct. The variant name is the stable stored type name, so renaming an event
/// struct is a schema change.
macro_rules! event_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant($variant)),*
        }

        impl $name {
            /// Every stored type name of this aggregate's events.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($variant)),*];

            /// The stable stored type name of this event.
            #[must_use]
            pub const fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),*
                }
            }

            /// The JSON payload of this event (current schema version).
            ///
            /// # Errors
            /// Only if a payload cannot be represented as JSON, which the event types rule out.
            pub fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $(Self::$variant(e) => serde_json::to_value(e)),*
                }
            }

            /// Decodes a current-version payload of `event_type` from JSON text; `None` when the
            /// type is not one of this aggregate's.
            pub fn from_str_payload(
                event_type: &str,
                payload: &str,
            ) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $(stringify!($variant) => Some(serde_json::from_str(payload).map(Self::$variant)),)*
                    _ => None,
                }
            }

            /// Decodes a current-version payload of `event_type`; `None` when the type is not one
            /// of this aggregate's.
            pub fn from_payload(
                event_type: &str,
                payload: serde_json::Value,
            ) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $(stringify!($variant) => Some(serde_json::from_value(payload).map(Self::$variant)),)*
                    _ => None,
                }
            }
        }

        $(impl From<$variant> for $name {
            fn from(event: $variant) -> Self {
                Self::$variant(event)
            }
        })*
    };
}
pub(crate) use event_enum;

/// Any domain event, of any aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A school-roster event.
    School(SchoolEvent),
    /// A person's event.
    Person(PersonEvent),
    /// A child's event.
    Child(ChildEvent),
    /// An invitation's event.
    Invitation(InvitationEvent),
    /// A post's event.
    Post(PostEvent),
    /// A conversation's event.
    Conversation(ConversationEvent),
    /// An activity's event.
    Activity(ActivityEvent),
    /// An access-log event.
    Access(AccessEvent),
    /// A meeting round's event.
    Meeting(MeetingEvent),
    /// A calendar-key event.
    Calendar(CalendarEvent),
}

macro_rules! dispatch {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            Event::School($e) => $body,
            Event::Person($e) => $body,
            Event::Child($e) => $body,
            Event::Invitation($e) => $body,
            Event::Post($e) => $body,
            Event::Conversation($e) => $body,
            Event::Activity($e) => $body,
            Event::Access($e) => $body,
            Event::Meeting($e) => $body,
            Event::Calendar($e) => $body,
        }
    };
}

/// A stored event that cannot be turned back into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No aggregate knows this type name.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The stored schema version is newer than this build understands.
    #[error("event type {event_type} has schema version {found}, newer than this build's {current}; upgrade Kring")]
    FutureVersion {
        /// The type name.
        event_type: String,
        /// The stored version.
        found: u16,
        /// The newest version this build knows.
        current: u16,
    },
    /// The payload does not match the type's schema.
    #[error("payload of {event_type} v{version} does not match its schema: {source}")]
    Payload {
        /// The type name.
        event_type: String,
        /// The stored version.
        version: u16,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl Event {
    /// Every stored type name, of all aggregates.
    pub fn all_types() -> impl Iterator<Item = &'static str> {
        [
            SchoolEvent::TYPES,
            PersonEvent::TYPES,
            ChildEvent::TYPES,
            InvitationEvent::TYPES,
            PostEvent::TYPES,
            ConversationEvent::TYPES,
            ActivityEvent::TYPES,
            AccessEvent::TYPES,
            MeetingEvent::TYPES,
            CalendarEvent::TYPES,
        ]
        .into_iter()
        .flatten()
        .copied()
    }

    /// The stable stored type name.
    #[must_use]
    pub const fn event_type(&self) -> &'static str {
        dispatch!(self, e => e.event_type())
    }

    /// The schema version this build writes for this event.
    #[must_use]
    pub fn schema_version(&self) -> u16 {
        current_schema_version(self.event_type())
    }

    /// The JSON payload (current schema version).
    ///
    /// # Errors
    /// Only if a payload cannot be represented as JSON, which the event types rule out.
    pub fn to_payload(&self) -> Result<Value, serde_json::Error> {
        dispatch!(self, e => e.to_payload())
    }

    /// Decodes a stored event from its JSON text. A current-version payload is parsed straight
    /// into its type (the fast path of a replay); an older one is upcast first.
    ///
    /// # Errors
    /// An unknown type, a schema version from the future, or a payload that does not match.
    pub fn decode_str(
        event_type: &str,
        schema_version: u16,
        payload: &str,
    ) -> Result<Self, DecodeError> {
        let payload_error = |source| DecodeError::Payload {
            event_type: event_type.to_owned(),
            version: schema_version,
            source,
        };
        if schema_version != current_schema_version(event_type) {
            let value = serde_json::from_str(payload).map_err(payload_error)?;
            return Self::decode(event_type, schema_version, value);
        }
        macro_rules! try_aggregate {
            ($agg:ident, $variant:ident) => {
                if let Some(result) = $agg::from_str_payload(event_type, payload) {
                    return result.map(Event::$variant).map_err(payload_error);
                }
            };
        }
        try_aggregate!(SchoolEvent, School);
        try_aggregate!(PersonEvent, Person);
        try_aggregate!(ChildEvent, Child);
        try_aggregate!(InvitationEvent, Invitation);
        try_aggregate!(PostEvent, Post);
        try_aggregate!(ConversationEvent, Conversation);
        try_aggregate!(ActivityEvent, Activity);
        try_aggregate!(AccessEvent, Access);
        try_aggregate!(MeetingEvent, Meeting);
        try_aggregate!(CalendarEvent, Calendar);
        Err(DecodeError::UnknownType(event_type.to_owned()))
    }

    /// Decodes a stored event, upcasting an older schema version to the current one first.
    ///
    /// # Errors
    /// An unknown type, a schema version from the future, or a payload that does not match.
    pub fn decode(
        event_type: &str,
        schema_version: u16,
        payload: Value,
    ) -> Result<Self, DecodeError> {
        let current = current_schema_version(event_type);
        if schema_version > current {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_owned(),
                found: schema_version,
                current,
            });
        }
        let payload = upcast(event_type, schema_version, payload);
        let payload_error = |source| DecodeError::Payload {
            event_type: event_type.to_owned(),
            version: schema_version,
            source,
        };
        macro_rules! try_aggregate {
            ($agg:ident, $variant:ident) => {
                if $agg::TYPES.contains(&event_type) {
                    return match $agg::from_payload(event_type, payload) {
                        Some(Ok(e)) => Ok(Event::$variant(e)),
                        Some(Err(source)) => Err(payload_error(source)),
                        None => Err(DecodeError::UnknownType(event_type.to_owned())),
                    };
                }
            };
        }
        try_aggregate!(SchoolEvent, School);
        try_aggregate!(PersonEvent, Person);
        try_aggregate!(ChildEvent, Child);
        try_aggregate!(InvitationEvent, Invitation);
        try_aggregate!(PostEvent, Post);
        try_aggregate!(ConversationEvent, Conversation);
        try_aggregate!(ActivityEvent, Activity);
        try_aggregate!(AccessEvent, Access);
        try_aggregate!(MeetingEvent, Meeting);
        try_aggregate!(CalendarEvent, Calendar);
        Err(DecodeError::UnknownType(event_type.to_owned()))
    }
}

macro_rules! event_from_aggregate {
    ($($agg:ident => $variant:ident),*) => {
        $(impl From<$agg> for Event {
            fn from(event: $agg) -> Self {
                Event::$variant(event)
            }
        })*
    };
}
event_from_aggregate!(
    SchoolEvent => School,
    PersonEvent => Person,
    ChildEvent => Child,
    InvitationEvent => Invitation,
    PostEvent => Post,
    ConversationEvent => Conversation,
    ActivityEvent => Activity,
    AccessEvent => Access,
    MeetingEvent => Meeting,
    CalendarEvent => Calendar
);

/// The schema version this build writes for `event_type` (1 unless an event's shape changed).
#[must_use]
pub fn current_schema_version(event_type: &str) -> u16 {
    match event_type {
        // v2 of ChildEnrolled: data minimisation — a child is known by first name and last
        // initial only.
        // v2 of the others: free text is sealed at rest — a removal's reason is a person's text
        // sealed for them or a fixed value; an access's reason is the route, never text.
        // v2 of MeetingRoundOpened: the place's words sealed for who opened the round.
        "ChildEnrolled" | "PostRemoved" | "MediaRemoved" | "AccessLogged"
        | "MeetingRoundOpened" => 2,
        _ => 1,
    }
}

/// Turns a stored payload of an older schema version into the current shape. Stored events are
/// never rewritten; this runs on every read.
fn upcast(event_type: &str, from_version: u16, payload: Value) -> Value {
    match (event_type, from_version) {
        ("ChildEnrolled", 1) => child_enrolled_v1_to_v2(payload),
        ("PostRemoved" | "MediaRemoved", 1) => removal_v1_to_v2(payload),
        ("AccessLogged", 1) => access_logged_v1_to_v2(payload),
        ("MeetingRoundOpened", 1) => meeting_round_opened_v1_to_v2(payload),
        _ => payload,
    }
}

/// `ChildEnrolled` v1 stored the child's full last name, in plain text. v2 keeps only its
/// initial, sealed for the child. Replaying an old log yields the minimised shape (as a plain
/// value that the vault seals on any re-write), and the full name never reaches a read model.
fn child_enrolled_v1_to_v2(mut payload: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        let subject = serde_json::json!({ "kind": "child", "id": fields.get("child_id").cloned().unwrap_or(Value::Null) });
        let plain = |value: Value| serde_json::json!({ crate::sealed::PLAIN_KEY: { "subject": subject, "value": value } });
        let initial = fields
            .remove("last_name")
            .and_then(|v| v.as_str().and_then(|s| s.chars().next()))
            .map(|c| c.to_uppercase().collect::<String>())
            .unwrap_or_default();
        fields.insert("last_initial".to_owned(), plain(Value::String(initial)));
        if let Some(first) = fields.remove("first_name") {
            fields.insert("first_name".to_owned(), plain(first));
        }
    }
    payload
}

/// `PostRemoved` and `MediaRemoved` v1 kept the reason as plain text. v2 keeps a person's text
/// sealed for that person and everything else as a fixed value. An old text is read as what it
/// would be now: the system's two texts as their fixed values; a person's text as their sealed
/// text (a plain value, shown while they exist and `[erased]` once they are erased); the
/// operator's free text as `not_kept`, since no erasure could ever reach it.
fn removal_v1_to_v2(mut payload: Value) -> Value {
    use crate::post::{INTERRUPTED_REMOVAL, SHOWS_AN_ERASED_CHILD};
    if let Value::Object(fields) = &mut payload {
        let text = fields.remove("reason").unwrap_or(Value::Null);
        let by = fields.get("by").cloned().unwrap_or(Value::Null);
        let reason = match (text.as_str(), by["kind"].as_str()) {
            (Some(SHOWS_AN_ERASED_CHILD), Some("system")) => {
                serde_json::json!({ "kind": "shows_an_erased_child" })
            }
            (Some(INTERRUPTED_REMOVAL), Some("system")) => {
                serde_json::json!({ "kind": "interrupted_removal" })
            }
            (Some(_), Some("person")) => serde_json::json!({
                "kind": "given",
                "text": { crate::sealed::PLAIN_KEY: {
                    "subject": { "kind": "person", "id": by["person_id"] },
                    "value": text,
                } },
            }),
            _ => serde_json::json!({ "kind": "not_kept" }),
        };
        fields.insert("reason".to_owned(), reason);
    }
    payload
}

/// `MeetingRoundOpened` v1 kept the place's words (a room's name, an online link) in the clear.
/// v2 seals them for the staff member who opened the round; an old text is read as their
/// sealed text (a plain value of their subject: shown while they exist, `[erased]` once they
/// are erased), as an old removal reason is.
fn meeting_round_opened_v1_to_v2(mut payload: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        let by = fields.get("by").cloned().unwrap_or(Value::Null);
        if let Some(Value::Object(place)) = fields.get_mut("place") {
            for key in ["name", "url"] {
                if let Some(text) = place.remove(key) {
                    place.insert(
                        key.to_owned(),
                        serde_json::json!({ crate::sealed::PLAIN_KEY: {
                            "subject": { "kind": "person", "id": by },
                            "value": text,
                        } }),
                    );
                }
            }
        }
    }
    payload
}

/// `AccessLogged` v1 kept the reason as text; every text Kring wrote was a route. v2 keeps the
/// route as a typed value; any other text is read as `not_kept`.
fn access_logged_v1_to_v2(mut payload: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        let subject = fields
            .get("subject")
            .cloned()
            .and_then(|s| serde_json::from_value::<crate::access::Subject>(s).ok());
        let text = fields.remove("reason").unwrap_or(Value::Null);
        let reason = match (text.as_str(), subject) {
            (Some(text), Some(subject)) => {
                crate::access::AccessReason::from_recorded_text(text, &subject)
            }
            _ => crate::access::AccessReason::NotKept,
        };
        fields.insert(
            "reason".to_owned(),
            serde_json::to_value(reason).unwrap_or(Value::Null),
        );
    }
    payload
}
