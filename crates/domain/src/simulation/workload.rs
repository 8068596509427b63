//! A seeded school-year workload for benchmarks, from 10k to 10M events, in bounded memory.
//!
//! Each school is a [`World`] of class groups with children and their invited, approved
//! guardians; then a school year of its life goes by: teachers post photos with tagged
//! children and change tags, parents decide and change consent, media are removed, parents and
//! teachers talk, parents report planned absences and volunteer for activities. When a school
//! has produced [`WorkloadConfig::events_per_school`] events, the next school starts (with ids
//! of its own), so memory holds one school at a time however long the log is. Events come out
//! in chunks, in the order the deciders produced them.
//!
//! The same seed gives the same log: every id comes from the simulated clock and a counter.

use super::{Recorded, World};
use crate::activity::ActivityAction;
use crate::child::{self, ChildAction};
use crate::conversation::ConversationAction;
use crate::post::PostAction;
use crate::{AbsenceId, ActivityId, Actor, ConversationId, MessageId, Purpose};
use chrono::Duration;

/// The shape and size of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// The seed of every choice.
    pub seed: u64,
    /// How many events to produce (the last step may add a few more).
    pub events: u64,
    /// Events per school before the next school starts: one school year of one school.
    pub events_per_school: u64,
    /// Class groups per school.
    pub groups: usize,
    /// Children per class group.
    pub children_per_group: usize,
    /// Guardians per child, each invited, accepted, approved and linked.
    pub guardians_per_child: usize,
    /// Events per chunk handed out (at least; a chunk ends on a whole command).
    pub chunk: usize,
}

impl WorkloadConfig {
    /// `events` events of school years of 16 classes of 25 children with 2 guardians each,
    /// 100,000 events per school year, in chunks of 5,000.
    #[must_use]
    pub const fn school_years(events: u64) -> Self {
        Self {
            seed: 20_260_901,
            events,
            events_per_school: 100_000,
            groups: 16,
            children_per_group: 25,
            guardians_per_child: 2,
            chunk: 5_000,
        }
    }
}

/// A tiny deterministic generator: the workload is seeded, not random per run.
#[derive(Debug, Clone)]
struct Lcg(u64);

impl Lcg {
    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap_or_default() % n.max(1)
    }
}

/// The workload: an iterator over chunks of recorded events.
#[derive(Debug)]
pub struct Workload {
    config: WorkloadConfig,
    rng: Lcg,
    world: World,
    school: u64,
    emitted: u64,
    school_emitted: u64,
    conversations: Vec<(ConversationId, Actor)>,
    step: Duration,
}

impl Workload {
    /// A workload of `config`'s shape; the first school is set up at once.
    #[must_use]
    pub fn new(config: WorkloadConfig) -> Self {
        // A school year (~300 days) spread over the school's share of steps.
        let minutes = (300 * 24 * 60 / config.events_per_school.max(1)).max(1);
        Self {
            rng: Lcg(config.seed),
            world: Self::school(&config, 0),
            school: 0,
            emitted: 0,
            school_emitted: 0,
            conversations: Vec::new(),
            step: Duration::minutes(i64::try_from(minutes).unwrap_or(1)),
            config,
        }
    }

    fn school(config: &WorkloadConfig, n: u64) -> World {
        World::numbered_with_classes(
            n,
            config.groups,
            config.children_per_group,
            config.guardians_per_child,
        )
    }

    /// The school being simulated now, or the last one once the workload is done (earlier
    /// schools are dropped).
    #[must_use]
    pub const fn world(&self) -> &World {
        &self.world
    }

    /// How many schools were started so far.
    #[must_use]
    pub const fn schools(&self) -> u64 {
        self.school + 1
    }

    /// How many events were handed out so far.
    #[must_use]
    pub const fn emitted(&self) -> u64 {
        self.emitted
    }

    /// One step of a school's life. Refusals are part of a realistic history: a refused
    /// command records nothing.
    fn step(&mut self) {
        let world = &mut self.world;
        let rng = &mut self.rng;
        world.advance(self.step);
        let g = rng.below(world.groups.len());
        let group = world.groups[g];
        // `with_classes` adds the director first, then one teacher per group.
        let teacher = Actor::Person(world.staff[1 + g]);
        let children: Vec<_> = world.school.audience_children(group).collect();
        let child = children[rng.below(children.len())];
        let guardians = world.guardians_of(child);
        let Some(&guardian) = guardians.get(rng.below(guardians.len())) else {
            return;
        };
        match rng.below(100) {
            0..=29 => {
                let tags: Vec<Vec<_>> = (0..3)
                    .map(|_| {
                        vec![
                            children[rng.below(children.len())],
                            children[rng.below(children.len())],
                        ]
                    })
                    .collect();
                let _ = world.publish(teacher, group, &tags);
            }
            30..=49 => {
                let purpose = [
                    Purpose::GroupCommunication,
                    Purpose::SchoolCommunication,
                    Purpose::PublicCommunication,
                ][rng.below(3)];
                let _ = world.decide_consent(guardian, child, purpose, rng.below(10) > 2);
            }
            50..=59 if !world.media_ids.is_empty() => {
                let recent = world.media_ids.len().min(50);
                let (post, media) = world.media_ids[world.media_ids.len() - 1 - rng.below(recent)];
                let tagged = children[rng.below(children.len())];
                let action = if rng.below(2) == 0 {
                    PostAction::Tag {
                        media_id: media,
                        child_id: tagged,
                    }
                } else {
                    PostAction::Untag {
                        media_id: media,
                        child_id: tagged,
                    }
                };
                let _ = world.post(teacher, post, action);
            }
            60..=61 if !world.media_ids.is_empty() => {
                let (post, media) = world.media_ids[rng.below(world.media_ids.len())];
                let _ = world.post(
                    teacher,
                    post,
                    PostAction::RemoveMedia {
                        media_id: media,
                        reason: "Op verzoek".into(),
                    },
                );
            }
            62..=84 => {
                if self.conversations.is_empty() || rng.below(5) == 0 {
                    let id = ConversationId::from_uuid(world.next_uuid());
                    let start = ConversationAction::Start {
                        conversation_id: id,
                        child_id: child,
                        participants: vec![],
                        message_id: MessageId::from_uuid(world.next_uuid()),
                        body: "Vraagje over het huiswerk".into(),
                    };
                    if world
                        .conversation(Actor::Person(guardian), id, start)
                        .is_ok()
                    {
                        world.conversation_ids.push(id);
                        self.conversations.push((id, Actor::Person(guardian)));
                    }
                } else {
                    let (id, author) = self.conversations[rng.below(self.conversations.len())];
                    let message_id = MessageId::from_uuid(world.next_uuid());
                    let _ = world.conversation(
                        author,
                        id,
                        ConversationAction::Post {
                            message_id,
                            body: "Dank je wel!".into(),
                        },
                    );
                }
            }
            85..=91 => {
                let notice = 1 + u32::try_from(rng.below(10)).unwrap_or_default();
                let from = child::earliest_absence_day(world.now, notice);
                let action = ChildAction::ReportAbsence {
                    child_id: child,
                    absence_id: AbsenceId::from_uuid(world.next_uuid()),
                    from,
                    to: from,
                    reason: "Bruiloft van tante".into(),
                };
                let _ = world.child(Actor::Person(guardian), child, action);
            }
            _ => {
                if world.activity_ids.is_empty() || rng.below(4) == 0 {
                    let id = ActivityId::from_uuid(world.next_uuid());
                    let starts_at = world.now + Duration::days(20);
                    let action = ActivityAction::Schedule {
                        activity_id: id,
                        group_id: group,
                        title: "Schoolreisje".into(),
                        starts_at,
                        ends_at: starts_at + Duration::hours(6),
                        volunteer_slots: 4,
                    };
                    if world.activity(teacher, id, action).is_ok() {
                        world.activity_ids.push(id);
                    }
                } else {
                    let recent = world.activity_ids.len().min(10);
                    let id = world.activity_ids[world.activity_ids.len() - 1 - rng.below(recent)];
                    let _ = world.activity(Actor::Person(guardian), id, ActivityAction::SignUp);
                }
            }
        }
    }
}

impl Iterator for Workload {
    type Item = Vec<Recorded>;

    /// The next chunk of events, or `None` once the configured number was handed out.
    fn next(&mut self) -> Option<Vec<Recorded>> {
        if self.emitted >= self.config.events {
            return None;
        }
        let left = self.config.events - self.emitted;
        loop {
            let pending = self.world.log.len() as u64;
            if self.school_emitted + pending >= self.config.events_per_school && pending < left {
                // This school's year is over: hand out its last events, start the next school.
                self.school += 1;
                let next = Self::school(&self.config, self.school);
                let done = std::mem::replace(&mut self.world, next);
                self.conversations.clear();
                self.school_emitted = 0;
                let chunk = done.log;
                self.emitted += chunk.len() as u64;
                return Some(chunk);
            }
            if pending >= left || pending >= self.config.chunk as u64 {
                self.school_emitted += pending;
                self.emitted += pending;
                return Some(std::mem::take(&mut self.world.log));
            }
            self.step();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(events: u64) -> WorkloadConfig {
        WorkloadConfig {
            events,
            events_per_school: 3_000,
            groups: 2,
            children_per_group: 5,
            chunk: 500,
            ..WorkloadConfig::school_years(events)
        }
    }

    #[test]
    fn same_seed_gives_the_same_log() {
        let a: Vec<Recorded> = Workload::new(small(2_000)).flatten().collect();
        let b: Vec<Recorded> = Workload::new(small(2_000)).flatten().collect();
        assert!(a.len() >= 2_000);
        assert_eq!(a, b);
    }

    #[test]
    fn a_long_log_spreads_over_schools_with_ids_of_their_own() {
        let mut workload = Workload::new(small(10_000));
        let mut schools = std::collections::BTreeSet::new();
        let mut total = 0;
        for chunk in workload.by_ref() {
            assert!(!chunk.is_empty());
            total += chunk.len();
            for r in &chunk {
                if let crate::Event::School(crate::school::SchoolEvent::SchoolRegistered(s)) =
                    &r.event
                {
                    assert!(
                        schools.insert(s.school_id),
                        "school id {} reused",
                        s.school_id
                    );
                }
            }
        }
        assert!(total >= 10_000);
        assert_eq!(workload.emitted(), total as u64);
        assert!(schools.len() >= 3, "only {} schools", schools.len());
    }

    #[test]
    fn the_last_school_is_kept_when_the_log_ends_with_its_year() {
        let mut workload = Workload::new(small(6_000));
        let total: usize = workload.by_ref().map(|c| c.len()).sum();
        assert!(total >= 6_000);
        assert!(!workload.world().media_ids.is_empty());
        assert!(workload.world().log.is_empty());
    }

    #[test]
    fn the_mix_has_every_kind_of_school_life() {
        let log: Vec<Recorded> = Workload::new(small(5_000)).flatten().collect();
        let types: std::collections::BTreeSet<&str> =
            log.iter().map(|r| r.event.event_type()).collect();
        for wanted in [
            "SchoolRegistered",
            "InvitationApproved",
            "ConsentDecided",
            "PostPublished",
            "ConversationStarted",
            "PlannedAbsenceReported",
            "MediaRemoved",
            "ChildTagged",
            "MessagePosted",
            "VolunteerSignedUp",
            "ActivityScheduled",
        ] {
            assert!(types.contains(wanted), "{wanted} missing from {types:?}");
        }
    }
}
