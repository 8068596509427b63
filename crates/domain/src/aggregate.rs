//! The aggregate contract: a state that folds its own events.
//!
//! Each aggregate module has a pure `evolve(state, &event)`; [`Aggregate`] ties a state type to
//! its event type and its `evolve`, so code that loads streams (the API's executor, the
//! replay-tool's "as of" folds) folds any aggregate the same way.

use crate::event::Event;
use crate::{
    access, activity, calendar, child, conversation, invitation, meeting, person, post, school,
};

/// One aggregate of the domain: its state, its events, and how they fold.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The aggregate's events.
    type Event: Into<Event> + Clone + Send + Sync + 'static;

    /// The event, if it is one of this aggregate's.
    fn pick(event: Event) -> Option<Self::Event>;

    /// The event, if it is one of this aggregate's, by reference.
    fn pick_ref(event: &Event) -> Option<&Self::Event>;

    /// The state after `event` (the module's `evolve`).
    #[must_use]
    fn evolve(self, event: &Self::Event) -> Self;

    /// The state after `events` in order, from the empty state; other aggregates' events are
    /// passed over.
    #[must_use]
    fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events
            .into_iter()
            .filter_map(Self::pick_ref)
            .fold(Self::default(), Self::evolve)
    }
}

macro_rules! aggregate {
    ($module:ident :: $state:ident, $event:ident, $variant:ident) => {
        impl Aggregate for $module::$state {
            type Event = $module::$event;
            fn pick(event: Event) -> Option<Self::Event> {
                match event {
                    Event::$variant(e) => Some(e),
                    _ => None,
                }
            }
            fn pick_ref(event: &Event) -> Option<&Self::Event> {
                match event {
                    Event::$variant(e) => Some(e),
                    _ => None,
                }
            }
            fn evolve(self, event: &Self::Event) -> Self {
                $module::evolve(self, event)
            }
        }
    };
}

aggregate!(school::School, SchoolEvent, School);
aggregate!(child::Child, ChildEvent, Child);
aggregate!(person::Person, PersonEvent, Person);
aggregate!(invitation::Invitation, InvitationEvent, Invitation);
aggregate!(post::Post, PostEvent, Post);
aggregate!(conversation::Conversation, ConversationEvent, Conversation);
aggregate!(activity::Activity, ActivityEvent, Activity);
aggregate!(access::AccessLog, AccessEvent, Access);
aggregate!(meeting::MeetingRound, MeetingEvent, Meeting);
aggregate!(calendar::CalendarKey, CalendarEvent, Calendar);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::school::{School, SchoolEvent, SchoolRegistered, SchoolSettings};
    use crate::{GroupId, PersonId, SchoolId};

    #[test]
    fn fold_passes_over_other_aggregates_events_and_keeps_order() {
        let school_id = SchoolId::generate();
        let registered = |name: &str| -> Event {
            SchoolEvent::SchoolRegistered(SchoolRegistered {
                school_id,
                name: name.into(),
                brin: "12AB".into(),
                school_group_id: GroupId::generate(),
                settings: SchoolSettings::default(),
            })
            .into()
        };
        let stranger: Event = person::PersonEvent::QuietHoursCleared(person::QuietHoursCleared {
            person_id: PersonId::generate(),
        })
        .into();
        let (first, second) = (registered("Eerste"), registered("Tweede"));
        let by_hand = [&first, &second]
            .into_iter()
            .map(|e| School::pick(e.clone()).expect("a school event"))
            .fold(School::default(), |s, e| school::evolve(s, &e));
        let folded = School::fold([&stranger, &first, &stranger, &second]);
        assert_eq!(folded, by_hand);
        assert_ne!(folded, School::fold([&second, &first]));
        assert!(School::pick(stranger).is_none());
    }
}
