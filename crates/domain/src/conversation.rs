//! Conversations: staff and the guardians of one child, never parent to parent.

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ChildId, ConversationId, MessageId, PersonId, SchoolId};
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most people a new conversation names besides its starter.
pub const MAX_PARTICIPANTS: usize = 20;
use std::collections::BTreeSet;

/// A conversation's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// The conversation, once started.
    pub conversation_id: Option<ConversationId>,
    /// The child it is about.
    pub child_id: Option<ChildId>,
    /// Who takes part.
    pub participants: BTreeSet<PersonId>,
    /// Messages posted so far.
    pub messages: u64,
}

/// A conversation was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationStarted {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The school.
    pub school_id: SchoolId,
    /// The child it is about.
    pub child_id: ChildId,
    /// Who takes part (the starter included).
    pub participants: Vec<PersonId>,
    /// Who started it.
    pub started_by: PersonId,
    /// When.
    pub at: DateTime<Utc>,
}

/// A message was posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePosted {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message.
    pub message_id: MessageId,
    /// Its author.
    pub author_id: PersonId,
    /// Its text (personal, sealed for its author).
    pub body: Sealed<String>,
    /// When.
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Events of a conversation stream.
    pub enum ConversationEvent {
        /// See [`ConversationStarted`].
        ConversationStarted,
        /// See [`MessagePosted`].
        MessagePosted,
    }
}

/// What can be asked of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationAction {
    /// Start a conversation about a child with a first message. Without participants, a
    /// guardian reaches the staff of the child's group and staff reach the child's guardians.
    Start {
        /// The new conversation's id.
        conversation_id: ConversationId,
        /// The child.
        child_id: ChildId,
        /// Other participants; empty for the default.
        participants: Vec<PersonId>,
        /// The first message's id.
        message_id: MessageId,
        /// The first message.
        body: String,
    },
    /// Post a message (a participant).
    Post {
        /// The new message's id.
        message_id: MessageId,
        /// The text.
        body: String,
    },
}

/// The state `decide` needs: the conversation and its school's roster.
#[derive(Debug, Clone, Copy)]
pub struct ConversationContext<'a> {
    /// The conversation's state.
    pub conversation: &'a Conversation,
    /// The school's roster.
    pub school: &'a School,
}

/// Who may take part in a conversation about `child_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Staff,
    Guardian,
}

/// Rule: a person takes part in a conversation about `child_id` — reads it, writes in it, is
/// notified of it — only while they are staff of the child's group or a linked guardian of the
/// child. A relation that ends (staff leaving, unassigned or no longer director, a guardian
/// unlinked, the child moved or unenrolled) ends it, for the conversations started before too.
#[must_use]
pub fn takes_part(school: &School, person: PersonId, child_id: ChildId) -> bool {
    side(school, person, child_id).is_some()
}

fn side(school: &School, person: PersonId, child_id: ChildId) -> Option<Side> {
    let group_id = school.children.get(&child_id)?.group_id;
    if school.is_group_staff(Actor::Person(person), group_id) {
        Some(Side::Staff)
    } else if school.is_guardian(person, child_id) {
        Some(Side::Guardian)
    } else {
        None
    }
}

/// Decides a command about a conversation.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
pub fn decide(
    ctx: &ConversationContext<'_>,
    command: Command<ConversationAction>,
    now: DateTime<Utc>,
) -> Result<Vec<ConversationEvent>, DomainError> {
    let ConversationContext {
        conversation,
        school,
    } = *ctx;
    let Command { actor, action } = command;
    match action {
        ConversationAction::Start {
            conversation_id,
            child_id,
            participants,
            message_id,
            body,
        } => {
            if conversation.conversation_id.is_some() {
                return Err(DomainError::AlreadyExists {
                    kind: "conversation",
                    id: conversation_id.into(),
                });
            }
            if participants.len() > MAX_PARTICIPANTS {
                return Err(DomainError::invalid(
                    "participants",
                    format!("at most {MAX_PARTICIPANTS}"),
                ));
            }
            let school_id = school.id()?;
            let enrolment = school.enrolment(child_id)?;
            let Some(started_by) = actor.person() else {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "start a conversation",
                });
            };
            let starter_side =
                side(school, started_by, child_id).ok_or(DomainError::ParticipantNotAllowed {
                    person_id: started_by,
                    child_id,
                })?;
            let mut everyone: BTreeSet<PersonId> = participants.into_iter().collect();
            if everyone.is_empty() || everyone == BTreeSet::from([started_by]) {
                everyone = match starter_side {
                    Side::Guardian => school.group(enrolment.group_id)?.staff.clone(),
                    Side::Staff => enrolment.guardians.clone(),
                };
            }
            everyone.insert(started_by);
            let (mut staff, mut guardians) = (0, 0);
            for person in &everyone {
                match side(school, *person, child_id) {
                    Some(Side::Staff) => staff += 1,
                    Some(Side::Guardian) => guardians += 1,
                    None => {
                        return Err(DomainError::ParticipantNotAllowed {
                            person_id: *person,
                            child_id,
                        })
                    }
                }
            }
            if staff == 0 || guardians == 0 {
                return Err(DomainError::ConversationNeedsStaffAndGuardian { child_id });
            }
            Ok(vec![
                ConversationStarted {
                    conversation_id,
                    school_id,
                    child_id,
                    participants: everyone.into_iter().collect(),
                    started_by,
                    at: now,
                }
                .into(),
                MessagePosted {
                    conversation_id,
                    message_id,
                    author_id: started_by,
                    body: Sealed::new(
                        Subject::Person(started_by),
                        validate::text("body", &body, 5_000)?,
                    ),
                    at: now,
                }
                .into(),
            ])
        }
        ConversationAction::Post { message_id, body } => {
            let (Some(conversation_id), Some(child_id)) =
                (conversation.conversation_id, conversation.child_id)
            else {
                return Err(DomainError::not_found("conversation", uuid::Uuid::nil()));
            };
            let author_id = match actor.person() {
                Some(p) if conversation.participants.contains(&p) => p,
                _ => {
                    return Err(DomainError::NotParticipant {
                        actor,
                        conversation_id,
                    })
                }
            };
            // A guardian unlinked or staff moved away since the start no longer writes here.
            if side(school, author_id, child_id).is_none() {
                return Err(DomainError::ParticipantNotAllowed {
                    person_id: author_id,
                    child_id,
                });
            }
            Ok(vec![MessagePosted {
                conversation_id,
                message_id,
                author_id,
                body: Sealed::new(
                    Subject::Person(author_id),
                    validate::text("body", &body, 5_000)?,
                ),
                at: now,
            }
            .into()])
        }
    }
}

/// Applies a conversation event to the state.
#[must_use]
pub fn evolve(mut state: Conversation, event: &ConversationEvent) -> Conversation {
    match event {
        ConversationEvent::ConversationStarted(e) => {
            state.conversation_id = Some(e.conversation_id);
            state.child_id = Some(e.child_id);
            state.participants = e.participants.iter().copied().collect();
        }
        ConversationEvent::MessagePosted(_) => state.messages += 1,
    }
    state
}
