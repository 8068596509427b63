//! A person's calendar feed key: the secret in the link of their iCalendar feed. Only its
//! SHA-256 digest is recorded, as with invitation codes; issuing a new key replaces the old one,
//! which stops working.

use crate::actor::Command;
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::PersonId;
use serde::{Deserialize, Serialize};

/// A person's calendar-key state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarKey {
    /// The person, once a key was issued.
    pub person_id: Option<PersonId>,
    /// The digest of the current key.
    pub key_digest: Option<String>,
    /// How many keys were issued.
    pub issued: u32,
}

/// A person got a new calendar feed key; any earlier one stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarKeyIssued {
    /// The person.
    pub person_id: PersonId,
    /// SHA-256 of the key, hex.
    pub key_digest: String,
}

event_enum! {
    /// Events of a person's calendar-key stream.
    pub enum CalendarEvent {
        /// See [`CalendarKeyIssued`].
        CalendarKeyIssued,
    }
}

/// What can be asked of a calendar key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarAction {
    /// Issue a new key (the person themself).
    Issue {
        /// Whose feed.
        person_id: PersonId,
        /// SHA-256 of the new key, hex (64 characters).
        key_digest: String,
    },
}

/// Decides a command about a calendar key.
///
/// # Errors
/// `NotAllowed` for anyone but the person; `Invalid` for a digest that is not 64 hex digits.
pub fn decide(
    _state: &CalendarKey,
    command: Command<CalendarAction>,
) -> Result<Vec<CalendarEvent>, DomainError> {
    let Command { actor, action } = command;
    let CalendarAction::Issue {
        person_id,
        key_digest,
    } = action;
    if actor.person() != Some(person_id) {
        return Err(DomainError::NotAllowed {
            actor,
            action: "issue another person's calendar key",
        });
    }
    if key_digest.len() != 64 || !key_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::invalid("key_digest", "must be 64 hex digits"));
    }
    Ok(vec![CalendarKeyIssued {
        person_id,
        key_digest,
    }
    .into()])
}

/// Applies a calendar-key event to the state.
#[must_use]
pub fn evolve(mut state: CalendarKey, event: &CalendarEvent) -> CalendarKey {
    match event {
        CalendarEvent::CalendarKeyIssued(e) => {
            state.person_id = Some(e.person_id);
            state.key_digest = Some(e.key_digest.clone());
            state.issued += 1;
        }
    }
    state
}
