//! A seeded school-year workload for benchmarks, from 10k to 10M events, in bounded memory.
//!
//! Each school is a [`World`] of class groups with children and their invited, approved
//! guardians; then a school year of its life goes by: teachers post photos with tagged
//! children and change tags, parents decide and change consent, media are removed, parents and
//! teachers talk, parents report planned absences and volunteer for activities.
//!
//! Schools live side by side, [`WorkloadConfig::schools_at_once`] of them, as in the log of one
//! deployment: the next step is always the one of the school whose simulated clock is
//! earliest, so their events interleave and the log is in time order (and so are the UUID v7
//! ids in it, as the API's own are). When a school has produced
//! [`WorkloadConfig::events_per_school`] events its year is over and the next school starts
//! in its place, on its clock, with ids of its own: memory holds the schools running now,
//! however long the log is. Events come out in chunks, in the order the deciders produced them.
//!
//! The same seed gives the same log: every id comes from the simulated clock and a counter.

use super::{Recorded, World};
use crate::activity::ActivityAction;
use crate::child::{self, ChildAction};
use crate::conversation::ConversationAction;
use crate::post::PostAction;
use crate::{AbsenceId, ActivityId, Actor, ConversationId, MessageId, Purpose};
use chrono::{DateTime, Duration, Utc};

/// The shape and size of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// The seed of every choice.
    pub seed: u64,
    /// How many events to produce (the last step may add a few more).
    pub events: u64,
    /// Events per school before the next school starts: one school year of one school.
    pub events_per_school: u64,
    /// Schools whose years run side by side (at least one).
    pub schools_at_once: usize,
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
    /// 100,000 events per school year, ten schools side by side, in chunks of 5,000.
    #[must_use]
    pub const fn school_years(events: u64) -> Self {
        Self {
            seed: 20_260_901,
            events,
            events_per_school: 100_000,
            schools_at_once: 10,
            groups: 16,
            children_per_group: 25,
            guardians_per_child: 2,
            chunk: 5_000,
        }
    }
}

/// A number in `0..n` (0 when `n` is 0, so an empty choice finds nothing rather than panics).
fn below(rng: &mut fastrand::Rng, n: usize) -> usize {
    rng.usize(..n.max(1))
}

/// The workload: an iterator over chunks of recorded events.
#[derive(Debug)]
pub struct Workload {
    config: WorkloadConfig,
    rng: fastrand::Rng,
    /// The schools running now, in the order they started.
    running: Vec<School>,
    /// Schools started so far.
    started: u64,
    emitted: u64,
    step: Duration,
}

/// One school in its year.
#[derive(Debug)]
struct School {
    /// Its number among the schools started ([`World::numbered`]): the first wins a tie.
    number: u64,
    world: World,
    /// Events it produced so far.
    produced: u64,
    conversations: Vec<(ConversationId, Actor)>,
}

impl Workload {
    /// A workload of `config`'s shape; its schools are set up as the first chunks are asked
    /// for.
    #[must_use]
    pub fn new(config: WorkloadConfig) -> Self {
        // A school year (~300 days) spread over the school's share of steps.
        let minutes = (300 * 24 * 60 / config.events_per_school.max(1)).max(1);
        Self {
            rng: fastrand::Rng::with_seed(config.seed),
            running: Vec::new(),
            started: 0,
            emitted: 0,
            step: Duration::minutes(i64::try_from(minutes).unwrap_or(1)),
            config,
        }
    }

    /// Sets up the next school, its clock at `now`; its set-up events are its first.
    fn start(&mut self, now: DateTime<Utc>) -> School {
        let number = self.started;
        self.started += 1;
        School {
            number,
            produced: 0,
            world: World::numbered_with_classes_from(
                number,
                now,
                self.config.groups,
                self.config.children_per_group,
                self.config.guardians_per_child,
            ),
            conversations: Vec::new(),
        }
    }

    /// The running school that has produced the most events (so the one with the most to
    /// ask about: posts, media, conversations).
    ///
    /// # Panics
    /// Before the first chunk was asked for (no school is set up yet).
    #[allow(
        clippy::expect_used,
        reason = "documented under Panics: asked before the first chunk"
    )]
    #[must_use]
    pub fn world(&self) -> &World {
        let busiest = self
            .running
            .iter()
            .max_by_key(|s| (s.produced, std::cmp::Reverse(s.number)))
            .expect("a school is set up with the first chunk");
        &busiest.world
    }

    /// How many schools were started so far.
    #[must_use]
    pub const fn schools(&self) -> u64 {
        self.started
    }

    /// How many events were handed out so far.
    #[must_use]
    pub const fn emitted(&self) -> u64 {
        self.emitted
    }

    /// One step of a school's life. Refusals are part of a realistic history: a refused
    /// command records nothing.
    fn step(school: &mut School, rng: &mut fastrand::Rng, step: Duration) {
        let world = &mut school.world;
        world.advance(step);
        let g = below(rng, world.groups.len());
        let group = world.groups[g];
        // `with_classes` adds the director first, then one teacher per group.
        let teacher = Actor::Person(world.staff[1 + g]);
        let children: Vec<_> = world.school.audience_children(group).collect();
        let child = children[below(rng, children.len())];
        let guardians = world.guardians_of(child);
        let Some(&guardian) = guardians.get(below(rng, guardians.len())) else {
            return;
        };
        match below(rng, 100) {
            0..=29 => {
                let tags: Vec<Vec<_>> = (0..3)
                    .map(|_| {
                        vec![
                            children[below(rng, children.len())],
                            children[below(rng, children.len())],
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
                ][below(rng, 3)];
                let _ = world.decide_consent(guardian, child, purpose, below(rng, 10) > 2);
            }
            50..=59 if !world.media_ids.is_empty() => {
                let recent = world.media_ids.len().min(50);
                let (post, media) = world.media_ids[world.media_ids.len() - 1 - below(rng, recent)];
                let tagged = children[below(rng, children.len())];
                let action = if below(rng, 2) == 0 {
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
                let (post, media) = world.media_ids[below(rng, world.media_ids.len())];
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
                if school.conversations.is_empty() || below(rng, 5) == 0 {
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
                        school.conversations.push((id, Actor::Person(guardian)));
                    }
                } else {
                    let (id, author) = school.conversations[below(rng, school.conversations.len())];
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
                let notice = 1 + u32::try_from(below(rng, 10)).unwrap_or_default();
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
                if world.activity_ids.is_empty() || below(rng, 4) == 0 {
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
                    let id = world.activity_ids[world.activity_ids.len() - 1 - below(rng, recent)];
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
        let mut chunk = Vec::new();
        while (chunk.len() as u64) < left && chunk.len() < self.config.chunk {
            let over = |s: &School| s.produced >= self.config.events_per_school;
            let i = if self.running.len() < self.config.schools_at_once.max(1) {
                // Schools side by side all open on the first day.
                let school = self.start(World::first_day());
                self.running.push(school);
                self.running.len() - 1
            } else {
                // The school whose next events are earliest (the first of those, on a tie)
                // goes next: a step moves its clock on, then acts; a school whose year is
                // over hands over to the next one at its clock.
                let next_at = |s: &School| {
                    if over(s) {
                        s.world.now
                    } else {
                        s.world.now + self.step
                    }
                };
                let i = (0..self.running.len())
                    .min_by_key(|&i| (next_at(&self.running[i]), i))
                    .unwrap_or_default();
                if over(&self.running[i]) {
                    // Its year is over: the next school starts in its place, on its clock.
                    let now = self.running[i].world.now;
                    self.running[i] = self.start(now);
                } else {
                    Self::step(&mut self.running[i], &mut self.rng, self.step);
                }
                i
            };
            // Whatever the school recorded (a step, or a new school's set-up) goes out now.
            let school = &mut self.running[i];
            school.produced += school.world.log.len() as u64;
            chunk.append(&mut school.world.log);
        }
        self.emitted += chunk.len() as u64;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(events: u64) -> WorkloadConfig {
        WorkloadConfig {
            events,
            events_per_school: 3_000,
            schools_at_once: 3,
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
        // Three side by side, and more once their years of 3,000 events are over.
        assert!(schools.len() >= 4, "only {} schools", schools.len());
        assert_eq!(workload.schools(), schools.len() as u64);
    }

    #[test]
    fn schools_side_by_side_make_one_log_in_time_order() {
        let log: Vec<Recorded> = Workload::new(small(12_000)).flatten().collect();
        for pair in log.windows(2) {
            assert!(
                pair[0].at <= pair[1].at,
                "{} at {} before {} at {}",
                pair[0].event.event_type(),
                pair[0].at,
                pair[1].event.event_type(),
                pair[1].at
            );
        }
        // The first schools' posts interleave rather than come one school after another.
        let posters: Vec<_> = log
            .iter()
            .filter_map(|r| match &r.event {
                crate::Event::Post(crate::post::PostEvent::PostPublished(p)) => Some(p.school_id),
                _ => None,
            })
            .take(30)
            .collect();
        let changes = posters.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(
            changes >= 10,
            "posts of one school after another: {posters:?}"
        );
        // A school that starts when another's year is over starts on that school's clock.
        let opened: Vec<_> = log
            .iter()
            .filter(|r| r.event.event_type() == "SchoolRegistered")
            .map(|r| r.at)
            .collect();
        assert!(opened.len() >= 4, "only {} schools", opened.len());
        assert!(opened[..3].iter().all(|at| *at == World::first_day()));
        assert!(opened[3] > World::first_day());
    }

    #[test]
    fn the_school_to_ask_about_is_the_busiest_one_even_when_another_just_opened() {
        // Three years of ~3,000 events end near 9,000: a fourth school has just been set up
        // (its roster only) when the log ends.
        let mut workload = Workload::new(small(9_050));
        let total: usize = workload.by_ref().map(|c| c.len()).sum();
        assert!(total >= 9_050);
        assert_eq!(workload.schools(), 4);
        assert!(!workload.world().media_ids.is_empty());
        assert!(!workload.world().conversation_ids.is_empty());
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
