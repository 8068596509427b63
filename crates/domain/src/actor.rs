//! Who issues a command.

use crate::ids::PersonId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The actor of a command: a person (staff or guardian), the platform operator, or the
/// system itself (retention, expiry jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "person_id", rename_all = "snake_case")]
pub enum Actor {
    /// A person known to Kring.
    Person(PersonId),
    /// The platform operator (support, legal removals); not a member of any school.
    Operator,
    /// Kring itself, e.g. the retention and expiry jobs.
    System,
}

impl Actor {
    /// The person behind this actor, if it is one.
    #[must_use]
    pub const fn person(&self) -> Option<PersonId> {
        match self {
            Self::Person(p) => Some(*p),
            Self::Operator | Self::System => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Person(p) => write!(f, "person {p}"),
            Self::Operator => f.write_str("the operator"),
            Self::System => f.write_str("the system"),
        }
    }
}

/// A command with the actor who issues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<A> {
    /// Who asks.
    pub actor: Actor,
    /// What they ask for.
    pub action: A,
}

impl<A> Command<A> {
    /// `action` issued by `actor`.
    pub const fn new(actor: Actor, action: A) -> Self {
        Self { actor, action }
    }
}
