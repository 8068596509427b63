//! Meeting rounds (gespreksplanner): rounds of parent–teacher conversations in time slots that
//! guardians book, never two bookings for one slot and never two for one child in a round.
//!
//! A round belongs to one or more groups of a school. Its slots are numbered from 1 in the order
//! they were made; each slot has one or more staff members. A booking holds one slot for one
//! child (`per: child`) or for all the children of one family in the round's groups (`per:
//! family`: siblings share one conversation). Either guardian of a child books, moves and
//! cancels until `book_until`; staff of the round's groups may do so at any time, also for a
//! family that did not book.
//!
//! Decisions about what happens around a booking:
//! - a child moved to another group keeps its booking in the old group's round (the
//!   conversation is about the time the child spent there); its guardians may still move or
//!   cancel it, but nobody books that child anew in the old group's round;
//! - an erased guardian's booking stays, as a booking for the child: the erasure unlinks the
//!   guardian, whose id remains only as who booked; the other guardian and staff manage it.
//!
//! Overlap: a family cannot be in two conversations at once. Within a round `decide` sees every
//! booking; across rounds it sees the `busy` intervals the caller hands in (the API reads them
//! from the meetings read model, so two bookings in two rounds at the same moment may both pass:
//! see docs/api.md).

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ChildId, GroupId, MeetingBookingId, MeetingRoundId, PersonId, SchoolId};
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The most slots one round has.
pub const MAX_SLOTS: usize = 500;
/// The most groups one round spans.
pub const MAX_GROUPS: usize = 20;
/// The most staff members in one slot.
pub const MAX_STAFF_PER_SLOT: usize = 4;
/// The longest slot.
pub const MAX_SLOT_MINUTES: u32 = 240;
/// Two conversations of one family this close (or closer) count as adjacent for suggestions.
pub const ADJACENT_MINUTES: i64 = 15;

/// Whom one booking is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// One conversation per child.
    #[default]
    Child,
    /// One conversation per family: siblings in the round share it.
    Family,
}

/// Where the conversations take place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Place {
    /// A room at school.
    Room {
        /// The room's name.
        name: String,
    },
    /// An online meeting.
    Online {
        /// The link (`https://…`).
        url: String,
    },
}

impl Place {
    fn validated(self) -> Result<Self, DomainError> {
        match self {
            Self::Room { name } => Ok(Self::Room {
                name: validate::text("place.name", &name, 200)?,
            }),
            Self::Online { url } => {
                let url = validate::text("place.url", &url, 500)?;
                if !url.starts_with("https://") || url.len() <= "https://".len() {
                    return Err(DomainError::invalid(
                        "place.url",
                        "must be an https:// link",
                    ));
                }
                if url.chars().any(char::is_whitespace) {
                    return Err(DomainError::invalid("place.url", "must not contain spaces"));
                }
                Ok(Self::Online { url })
            }
        }
    }

    /// The place in words (a room's name, or the link).
    #[must_use]
    pub fn describe(&self) -> &str {
        match self {
            Self::Room { name } => name,
            Self::Online { url } => url,
        }
    }

    /// The place as recorded: its words sealed for `by`, who typed them.
    #[must_use]
    pub fn sealed_for(self, by: PersonId) -> SealedPlace {
        let sealed = |text| Sealed::new(Subject::Person(by), text);
        match self {
            Self::Room { name } => SealedPlace::Room { name: sealed(name) },
            Self::Online { url } => SealedPlace::Online { url: sealed(url) },
        }
    }
}

/// Where the conversations take place, as recorded: the kind in the clear, the words (a room's
/// name may name people; an online link lets anyone in) sealed for the staff member who opened
/// the round, like every free text (docs/decisions/0016-sealed-free-text.md). Readable to
/// whoever may see the round; `[erased]` once who opened it is erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SealedPlace {
    /// A room at school.
    Room {
        /// The room's name.
        name: Sealed<String>,
    },
    /// An online meeting.
    Online {
        /// The link.
        url: Sealed<String>,
    },
}

impl SealedPlace {
    /// `room` or `online`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Room { .. } => "room",
            Self::Online { .. } => "online",
        }
    }

    /// The sealed words: the room's name or the link.
    #[must_use]
    pub const fn text(&self) -> &Sealed<String> {
        match self {
            Self::Room { name } => name,
            Self::Online { url } => url,
        }
    }
}

/// One slot as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingSlot {
    /// Its number in the round, from 1.
    pub slot: u32,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// The staff members who hold the conversation.
    pub staff: Vec<PersonId>,
}

/// Staff opened a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingRoundOpened {
    /// The round.
    pub round_id: MeetingRoundId,
    /// The school.
    pub school_id: SchoolId,
    /// Its groups.
    pub group_ids: Vec<GroupId>,
    /// Its title.
    pub title: String,
    /// One booking per child or per family.
    pub per: Per,
    /// Where (schema version 2: its words sealed; version 1 had them in the clear).
    pub place: SealedPlace,
    /// Guardians book, move and cancel until then.
    pub book_until: DateTime<Utc>,
    /// Its slots.
    pub slots: Vec<MeetingSlot>,
    /// Who opened it.
    pub by: PersonId,
}

/// Staff added a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingSlotAdded {
    /// The round.
    pub round_id: MeetingRoundId,
    /// The slot.
    pub slot: MeetingSlot,
    /// Who added it.
    pub by: PersonId,
}

/// Staff blocked a free slot: nobody books it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingSlotBlocked {
    /// The round.
    pub round_id: MeetingRoundId,
    /// The slot's number.
    pub slot: u32,
    /// Who blocked it.
    pub by: PersonId,
}

/// A slot was booked (by a guardian, or assigned by staff).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingBooked {
    /// The round.
    pub round_id: MeetingRoundId,
    /// The booking.
    pub booking_id: MeetingBookingId,
    /// The slot's number.
    pub slot: u32,
    /// The children the conversation is about (one, or a family's in the round).
    pub child_ids: Vec<ChildId>,
    /// Who booked.
    pub by: PersonId,
}

/// A booking moved to another slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingMoved {
    /// The round.
    pub round_id: MeetingRoundId,
    /// The booking.
    pub booking_id: MeetingBookingId,
    /// The slot it had.
    pub from_slot: u32,
    /// The slot it has now.
    pub to_slot: u32,
    /// Who moved it.
    pub by: PersonId,
}

/// A booking was cancelled; its slot is free again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingBookingCancelled {
    /// The round.
    pub round_id: MeetingRoundId,
    /// The booking.
    pub booking_id: MeetingBookingId,
    /// Who cancelled it.
    pub by: PersonId,
}

/// Staff closed the round: no more bookings by anyone; the bookings stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingRoundClosed {
    /// The round.
    pub round_id: MeetingRoundId,
    /// Who closed it.
    pub by: PersonId,
}

/// Staff cancelled the round: no conversations take place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingRoundCancelled {
    /// The round.
    pub round_id: MeetingRoundId,
    /// Who cancelled it.
    pub by: PersonId,
}

event_enum! {
    /// Events of a meeting round's stream.
    pub enum MeetingEvent {
        /// See [`MeetingRoundOpened`].
        MeetingRoundOpened,
        /// See [`MeetingSlotAdded`].
        MeetingSlotAdded,
        /// See [`MeetingSlotBlocked`].
        MeetingSlotBlocked,
        /// See [`MeetingBooked`].
        MeetingBooked,
        /// See [`MeetingMoved`].
        MeetingMoved,
        /// See [`MeetingBookingCancelled`].
        MeetingBookingCancelled,
        /// See [`MeetingRoundClosed`].
        MeetingRoundClosed,
        /// See [`MeetingRoundCancelled`].
        MeetingRoundCancelled,
    }
}

/// Where a round stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundStatus {
    /// Bookings are taken (guardians until `book_until`).
    #[default]
    Open,
    /// Closed by staff: the bookings stand, nothing changes any more.
    Closed,
    /// Cancelled by staff.
    Cancelled,
}

impl RoundStatus {
    /// The status in words.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A slot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Its staff.
    pub staff: BTreeSet<PersonId>,
    /// Blocked by staff.
    pub blocked: bool,
    /// The booking holding it.
    pub booking: Option<MeetingBookingId>,
}

/// A booking's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingState {
    /// Its slot.
    pub slot: u32,
    /// Its children.
    pub child_ids: BTreeSet<ChildId>,
    /// Who booked it.
    pub by: PersonId,
    /// How often it changed (0 when booked; a move adds one).
    pub sequence: u32,
}

/// A meeting round's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingRound {
    /// The round, once opened.
    pub round_id: Option<MeetingRoundId>,
    /// Its school.
    pub school_id: Option<SchoolId>,
    /// Its groups.
    pub group_ids: BTreeSet<GroupId>,
    /// Its title.
    pub title: String,
    /// One booking per child or per family.
    pub per: Per,
    /// Where.
    pub place: Option<SealedPlace>,
    /// Guardians' deadline.
    pub book_until: Option<DateTime<Utc>>,
    /// Its slots by number.
    pub slots: BTreeMap<u32, SlotState>,
    /// Its live bookings (cancelled ones are gone).
    pub bookings: BTreeMap<MeetingBookingId, BookingState>,
    /// Open, closed or cancelled.
    pub status: RoundStatus,
}

impl MeetingRound {
    /// The live booking that holds `child_id`, if any.
    #[must_use]
    pub fn booking_of(&self, child_id: ChildId) -> Option<MeetingBookingId> {
        self.bookings
            .iter()
            .find(|(_, b)| b.child_ids.contains(&child_id))
            .map(|(id, _)| *id)
    }
}

/// A slot as staff ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Its staff.
    pub staff: Vec<PersonId>,
}

/// One day of generated slots, in the school's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateDay {
    /// The date.
    pub date: NaiveDate,
    /// The first slot's start (local time).
    pub from: NaiveTime,
    /// No slot ends after this (local time).
    pub to: NaiveTime,
}

/// How a round's slots are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotPlan {
    /// Given one by one.
    Slots(Vec<SlotRequest>),
    /// Generated: back-to-back slots of `slot_minutes` with `break_minutes` between them, each
    /// day from `from` until `to`.
    Generate {
        /// The days.
        days: Vec<GenerateDay>,
        /// Each slot's length.
        slot_minutes: u32,
        /// The break after each slot.
        break_minutes: u32,
        /// The staff of every slot.
        staff: Vec<PersonId>,
    },
}

/// What can be asked of a meeting round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingAction {
    /// Open a round (staff of every one of its groups).
    Open {
        /// The new round's id.
        round_id: MeetingRoundId,
        /// Its groups (at least one).
        group_ids: Vec<GroupId>,
        /// Its title.
        title: String,
        /// One booking per child or per family.
        per: Per,
        /// Where.
        place: Place,
        /// Guardians' deadline.
        book_until: DateTime<Utc>,
        /// Its slots.
        slots: SlotPlan,
    },
    /// Add a slot (staff).
    AddSlot(SlotRequest),
    /// Block a free slot (staff).
    BlockSlot {
        /// The slot's number.
        slot: u32,
    },
    /// Book a slot for a child (a guardian of the child, or staff assigning it).
    Book {
        /// The new booking's id.
        booking_id: MeetingBookingId,
        /// The slot's number.
        slot: u32,
        /// The child.
        child_id: ChildId,
    },
    /// Move a booking to another slot (its guardians, staff).
    Move {
        /// The booking.
        booking_id: MeetingBookingId,
        /// The new slot's number.
        slot: u32,
    },
    /// Cancel a booking (its guardians, staff).
    CancelBooking {
        /// The booking.
        booking_id: MeetingBookingId,
    },
    /// Close the round (staff).
    Close,
    /// Cancel the round (staff).
    Cancel,
}

/// A conversation of the family in another round, for the overlap rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
}

/// What `decide` needs: the round, its school's roster and, for a booking or a move, the
/// family's conversations in other rounds.
#[derive(Debug, Clone, Copy)]
pub struct MeetingContext<'a> {
    /// The round's state.
    pub round: &'a MeetingRound,
    /// The school's roster.
    pub school: &'a School,
    /// The family's conversations in other rounds.
    pub busy: &'a [Busy],
}

/// The guardians of `child_id`.
fn guardians_of(school: &School, child_id: ChildId) -> BTreeSet<PersonId> {
    school
        .children
        .get(&child_id)
        .map(|e| e.guardians.clone())
        .unwrap_or_default()
}

/// The children of the round's groups sharing a guardian with `child_id`, `child_id` included
/// when it is in them.
#[must_use]
pub fn family_in_round(round: &MeetingRound, school: &School, child_id: ChildId) -> Vec<ChildId> {
    let guardians = guardians_of(school, child_id);
    school
        .children
        .iter()
        .filter(|(c, e)| {
            round.group_ids.contains(&e.group_id)
                && (**c == child_id || !e.guardians.is_disjoint(&guardians))
        })
        .map(|(c, _)| *c)
        .collect()
}

/// Whether staff of the round: staff of one of its groups (directors oversee all).
#[must_use]
pub fn is_round_staff(round: &MeetingRound, school: &School, actor: Actor) -> bool {
    round
        .group_ids
        .iter()
        .any(|g| school.is_group_staff(actor, *g))
}

/// The slots a plan makes, numbered from `first`, in the school's time zone.
///
/// # Errors
/// `Invalid` for a plan that makes no slot, too many, or a local time that does not exist or
/// is ambiguous in the school's time zone.
pub fn plan_slots(
    plan: SlotPlan,
    school: &School,
    first: u32,
) -> Result<Vec<MeetingSlot>, DomainError> {
    let requests = match plan {
        SlotPlan::Slots(slots) => slots,
        SlotPlan::Generate {
            days,
            slot_minutes,
            break_minutes,
            staff,
        } => {
            if slot_minutes == 0 || slot_minutes > MAX_SLOT_MINUTES {
                return Err(DomainError::invalid(
                    "generate.slot_minutes",
                    format!("must be 1 to {MAX_SLOT_MINUTES}"),
                ));
            }
            if break_minutes > MAX_SLOT_MINUTES {
                return Err(DomainError::invalid(
                    "generate.break_minutes",
                    format!("must be at most {MAX_SLOT_MINUTES}"),
                ));
            }
            if days.len() > 31 {
                return Err(DomainError::invalid(
                    "generate.days",
                    "must be at most 31 days",
                ));
            }
            let tz = school.settings.tz();
            let local = |date: NaiveDate, time: NaiveTime| {
                tz.from_local_datetime(&date.and_time(time))
                    .single()
                    .map(|t| t.with_timezone(&Utc))
                    .ok_or_else(|| {
                        DomainError::invalid(
                            "generate.days",
                            format!(
                                "{date} {time} does not exist once in the school's time zone {}",
                                school.settings.timezone
                            ),
                        )
                    })
            };
            let (slot, pause) = (
                Duration::minutes(i64::from(slot_minutes)),
                Duration::minutes(i64::from(break_minutes)),
            );
            let mut out = Vec::new();
            for day in days {
                if day.to <= day.from {
                    return Err(DomainError::invalid(
                        "generate.days",
                        format!("on {}: `to` must be after `from`", day.date),
                    ));
                }
                let (start, end) = (local(day.date, day.from)?, local(day.date, day.to)?);
                let mut t = start;
                while t + slot <= end {
                    out.push(SlotRequest {
                        starts_at: t,
                        ends_at: t + slot,
                        staff: staff.clone(),
                    });
                    if out.len() > MAX_SLOTS {
                        return Err(DomainError::invalid(
                            "generate",
                            format!("makes more than {MAX_SLOTS} slots"),
                        ));
                    }
                    t = t + slot + pause;
                }
            }
            out
        }
    };
    requests
        .into_iter()
        .zip(first..)
        .map(|(r, slot)| {
            if r.ends_at <= r.starts_at {
                return Err(DomainError::invalid(
                    "slots.ends_at",
                    format!("slot {slot}: must be after starts_at"),
                ));
            }
            if r.ends_at - r.starts_at > Duration::minutes(i64::from(MAX_SLOT_MINUTES)) {
                return Err(DomainError::invalid(
                    "slots",
                    format!("slot {slot}: at most {MAX_SLOT_MINUTES} minutes"),
                ));
            }
            let staff: BTreeSet<PersonId> = r.staff.iter().copied().collect();
            if staff.is_empty() || staff.len() > MAX_STAFF_PER_SLOT {
                return Err(DomainError::invalid(
                    "slots.staff",
                    format!("slot {slot}: 1 to {MAX_STAFF_PER_SLOT} staff members"),
                ));
            }
            if let Some(p) = staff.iter().find(|p| !school.staff.contains_key(p)) {
                return Err(DomainError::invalid(
                    "slots.staff",
                    format!("person {p} is not staff of the school"),
                ));
            }
            Ok(MeetingSlot {
                slot,
                starts_at: r.starts_at,
                ends_at: r.ends_at,
                staff: staff.into_iter().collect(),
            })
        })
        .collect()
}

/// Whether two half-open intervals share a moment.
#[must_use]
pub fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// A slot's number, time and staff, for the staff-overlap rule.
type SlotTimes<'a> = (u32, DateTime<Utc>, DateTime<Utc>, &'a BTreeSet<PersonId>);

/// Rule: one staff member is never in two slots of a round at once.
fn check_staff_free(
    existing: &BTreeMap<u32, SlotState>,
    new: &[MeetingSlot],
) -> Result<(), DomainError> {
    let mut seen: Vec<SlotTimes<'_>> = existing
        .iter()
        .map(|(n, s)| (*n, s.starts_at, s.ends_at, &s.staff))
        .collect();
    let new_staff: Vec<BTreeSet<PersonId>> = new
        .iter()
        .map(|s| s.staff.iter().copied().collect())
        .collect();
    for (s, staff) in new.iter().zip(&new_staff) {
        if let Some((n, ..)) = seen.iter().find(|(_, a, b, st)| {
            overlaps((*a, *b), (s.starts_at, s.ends_at)) && !st.is_disjoint(staff)
        }) {
            return Err(DomainError::invalid(
                "slots",
                format!(
                    "slot {} overlaps slot {n} with the same staff member",
                    s.slot
                ),
            ));
        }
        seen.push((s.slot, s.starts_at, s.ends_at, staff));
    }
    Ok(())
}

/// Decides a command about a meeting round.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
#[allow(clippy::too_many_lines)]
pub fn decide(
    ctx: &MeetingContext<'_>,
    command: Command<MeetingAction>,
    now: DateTime<Utc>,
) -> Result<Vec<MeetingEvent>, DomainError> {
    let MeetingContext {
        round,
        school,
        busy,
    } = *ctx;
    let Command { actor, action } = command;
    if let MeetingAction::Open {
        round_id,
        group_ids,
        title,
        per,
        place,
        book_until,
        slots,
    } = action
    {
        if round.round_id.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "meeting round",
                id: round_id.into(),
            });
        }
        let school_id = school.id()?;
        let groups: BTreeSet<GroupId> = group_ids.iter().copied().collect();
        if groups.is_empty() || groups.len() > MAX_GROUPS {
            return Err(DomainError::invalid(
                "group_ids",
                format!("1 to {MAX_GROUPS} groups"),
            ));
        }
        let mut by = None;
        for group_id in &groups {
            school.group(*group_id)?;
            by = match actor.person() {
                Some(p) if school.is_group_staff(actor, *group_id) => Some(p),
                _ => {
                    return Err(DomainError::NotStaffOfGroup {
                        actor,
                        group_id: *group_id,
                        action: "open a meeting round",
                    })
                }
            };
            school.open_group(*group_id)?;
        }
        let by = by.ok_or(DomainError::NotAllowed {
            actor,
            action: "open a meeting round",
        })?;
        let slots = plan_slots(slots, school, 1)?;
        if slots.is_empty() || slots.len() > MAX_SLOTS {
            return Err(DomainError::invalid(
                "slots",
                format!("1 to {MAX_SLOTS} slots"),
            ));
        }
        check_staff_free(&BTreeMap::new(), &slots)?;
        return Ok(vec![MeetingRoundOpened {
            round_id,
            school_id,
            group_ids: groups.into_iter().collect(),
            title: validate::text("title", &title, 200)?,
            per,
            place: place.validated()?.sealed_for(by),
            book_until,
            slots,
            by,
        }
        .into()]);
    }
    let (Some(round_id), Some(book_until)) = (round.round_id, round.book_until) else {
        return Err(DomainError::not_found("meeting round", uuid::Uuid::nil()));
    };
    let staff = is_round_staff(round, school, actor);
    let by = actor.person().ok_or(DomainError::NotAllowed {
        actor,
        action: "take part in a meeting round",
    })?;
    let staff_only = |what: &'static str| -> Result<(), DomainError> {
        if staff {
            Ok(())
        } else {
            Err(DomainError::NotAllowed {
                actor,
                action: what,
            })
        }
    };
    let open = || -> Result<(), DomainError> {
        match round.status {
            RoundStatus::Open => Ok(()),
            status => Err(DomainError::RoundNotOpen {
                round_id,
                status: status.as_str(),
            }),
        }
    };
    // Rule: after `book_until` guardians no longer book or change; staff still can.
    let before_deadline = || -> Result<(), DomainError> {
        if staff || now < book_until {
            Ok(())
        } else {
            Err(DomainError::BookingDeadlinePassed {
                round_id,
                book_until,
            })
        }
    };
    let free_slot =
        |slot: u32, keep: Option<MeetingBookingId>| -> Result<&SlotState, DomainError> {
            let s = round.slots.get(&slot).ok_or_else(|| {
                DomainError::invalid("slot_id", format!("round has no slot {slot}"))
            })?;
            // Rule: a slot is never booked twice.
            if s.blocked || s.booking.is_some_and(|b| Some(b) != keep) {
                return Err(DomainError::SlotUnavailable {
                    round_id,
                    slot,
                    starts_at: s.starts_at,
                    reason: if s.blocked { "blocked" } else { "taken" },
                });
            }
            if !staff && s.starts_at <= now {
                return Err(DomainError::invalid(
                    "slot_id",
                    format!("slot {slot} has already begun"),
                ));
            }
            Ok(s)
        };
    // Rule: a family is never in two conversations at once.
    let family_free = |s: &SlotState,
                       children: &BTreeSet<ChildId>,
                       keep: Option<MeetingBookingId>,
                       slot: u32|
     -> Result<(), DomainError> {
        let guardians: BTreeSet<PersonId> = children
            .iter()
            .flat_map(|c| guardians_of(school, *c))
            .collect();
        let clash_here = round.bookings.iter().find(|(id, b)| {
            Some(**id) != keep
                && round.slots.get(&b.slot).is_some_and(|o| {
                    overlaps((o.starts_at, o.ends_at), (s.starts_at, s.ends_at))
                        && b.child_ids
                            .iter()
                            .any(|c| !guardians_of(school, *c).is_disjoint(&guardians))
                })
        });
        let clash = clash_here
            .and_then(|(_, b)| round.slots.get(&b.slot).map(|o| o.starts_at))
            .or_else(|| {
                busy.iter()
                    .find(|b| overlaps((b.starts_at, b.ends_at), (s.starts_at, s.ends_at)))
                    .map(|b| b.starts_at)
            });
        match clash {
            Some(other_starts_at) => Err(DomainError::OverlappingBooking {
                round_id,
                slot,
                other_starts_at,
            }),
            None => Ok(()),
        }
    };
    let booking = |booking_id: MeetingBookingId| -> Result<&BookingState, DomainError> {
        let b = round
            .bookings
            .get(&booking_id)
            .ok_or_else(|| DomainError::not_found("booking", booking_id))?;
        if staff || b.child_ids.iter().any(|c| school.is_guardian(by, *c)) {
            Ok(b)
        } else {
            Err(DomainError::NotAllowed {
                actor,
                action: "change this booking",
            })
        }
    };
    let event: MeetingEvent = match action {
        MeetingAction::Open { .. } => {
            return Err(DomainError::AlreadyExists {
                kind: "meeting round",
                id: round_id.into(),
            })
        }
        MeetingAction::AddSlot(request) => {
            staff_only("add a slot")?;
            open()?;
            if round.slots.len() >= MAX_SLOTS {
                return Err(DomainError::invalid(
                    "slots",
                    format!("a round has at most {MAX_SLOTS} slots"),
                ));
            }
            let next = round.slots.keys().next_back().map_or(1, |n| n + 1);
            let slots = plan_slots(SlotPlan::Slots(vec![request]), school, next)?;
            check_staff_free(&round.slots, &slots)?;
            let slot = slots
                .into_iter()
                .next()
                .ok_or_else(|| DomainError::invalid("slots", "no slot"))?;
            MeetingSlotAdded { round_id, slot, by }.into()
        }
        MeetingAction::BlockSlot { slot } => {
            staff_only("block a slot")?;
            open()?;
            let s = round.slots.get(&slot).ok_or_else(|| {
                DomainError::invalid("slot_id", format!("round has no slot {slot}"))
            })?;
            if s.blocked {
                return Err(DomainError::AlreadyDone {
                    what: format!("blocking slot {slot}"),
                });
            }
            if s.booking.is_some() {
                return Err(DomainError::SlotUnavailable {
                    round_id,
                    slot,
                    starts_at: s.starts_at,
                    reason: "taken",
                });
            }
            MeetingSlotBlocked { round_id, slot, by }.into()
        }
        MeetingAction::Book {
            booking_id,
            slot,
            child_id,
        } => {
            // Rule: a cancelled or closed round refuses bookings.
            open()?;
            if !staff && !school.is_guardian(by, child_id) {
                return Err(DomainError::NotGuardian {
                    person_id: by,
                    child_id,
                    action: "book a conversation",
                });
            }
            let in_round = school
                .children
                .get(&child_id)
                .is_some_and(|e| round.group_ids.contains(&e.group_id));
            if !in_round {
                return Err(DomainError::invalid(
                    "child_id",
                    format!("child {child_id} is not in a group of this round"),
                ));
            }
            before_deadline()?;
            if round.bookings.contains_key(&booking_id) {
                return Err(DomainError::AlreadyExists {
                    kind: "booking",
                    id: booking_id.into(),
                });
            }
            let children: BTreeSet<ChildId> = match round.per {
                Per::Child => BTreeSet::from([child_id]),
                Per::Family => family_in_round(round, school, child_id)
                    .into_iter()
                    .collect(),
            };
            // Rule: a child never has two bookings in one round.
            if let Some((existing, c)) = children
                .iter()
                .find_map(|c| round.booking_of(*c).map(|b| (b, *c)))
            {
                return Err(DomainError::AlreadyBooked {
                    round_id,
                    child_id: c,
                    booking_id: existing,
                });
            }
            let s = free_slot(slot, None)?;
            family_free(s, &children, None, slot)?;
            MeetingBooked {
                round_id,
                booking_id,
                slot,
                child_ids: children.into_iter().collect(),
                by,
            }
            .into()
        }
        MeetingAction::Move { booking_id, slot } => {
            open()?;
            let b = booking(booking_id)?;
            before_deadline()?;
            if b.slot == slot {
                return Err(DomainError::AlreadyDone {
                    what: format!("booking {booking_id} in slot {slot}"),
                });
            }
            let s = free_slot(slot, Some(booking_id))?;
            family_free(s, &b.child_ids, Some(booking_id), slot)?;
            MeetingMoved {
                round_id,
                booking_id,
                from_slot: b.slot,
                to_slot: slot,
                by,
            }
            .into()
        }
        MeetingAction::CancelBooking { booking_id } => {
            match round.status {
                RoundStatus::Cancelled => open()?,
                RoundStatus::Closed if !staff => open()?,
                _ => {}
            }
            booking(booking_id)?;
            before_deadline()?;
            MeetingBookingCancelled {
                round_id,
                booking_id,
                by,
            }
            .into()
        }
        MeetingAction::Close => {
            staff_only("close a meeting round")?;
            open()?;
            MeetingRoundClosed { round_id, by }.into()
        }
        MeetingAction::Cancel => {
            staff_only("cancel a meeting round")?;
            if round.status == RoundStatus::Cancelled {
                return Err(DomainError::AlreadyDone {
                    what: format!("cancelling meeting round {round_id}"),
                });
            }
            MeetingRoundCancelled { round_id, by }.into()
        }
    };
    Ok(vec![event])
}

fn slot_state(s: &MeetingSlot) -> SlotState {
    SlotState {
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        staff: s.staff.iter().copied().collect(),
        blocked: false,
        booking: None,
    }
}

/// Applies a meeting-round event to the state.
#[must_use]
pub fn evolve(mut state: MeetingRound, event: &MeetingEvent) -> MeetingRound {
    match event {
        MeetingEvent::MeetingRoundOpened(e) => {
            state.round_id = Some(e.round_id);
            state.school_id = Some(e.school_id);
            state.group_ids = e.group_ids.iter().copied().collect();
            state.title.clone_from(&e.title);
            state.per = e.per;
            state.place = Some(e.place.clone());
            state.book_until = Some(e.book_until);
            state.slots = e.slots.iter().map(|s| (s.slot, slot_state(s))).collect();
        }
        MeetingEvent::MeetingSlotAdded(e) => {
            state.slots.insert(e.slot.slot, slot_state(&e.slot));
        }
        MeetingEvent::MeetingSlotBlocked(e) => {
            if let Some(s) = state.slots.get_mut(&e.slot) {
                s.blocked = true;
            }
        }
        MeetingEvent::MeetingBooked(e) => {
            if let Some(s) = state.slots.get_mut(&e.slot) {
                s.booking = Some(e.booking_id);
            }
            state.bookings.insert(
                e.booking_id,
                BookingState {
                    slot: e.slot,
                    child_ids: e.child_ids.iter().copied().collect(),
                    by: e.by,
                    sequence: 0,
                },
            );
        }
        MeetingEvent::MeetingMoved(e) => {
            if let Some(s) = state.slots.get_mut(&e.from_slot) {
                s.booking = None;
            }
            if let Some(s) = state.slots.get_mut(&e.to_slot) {
                s.booking = Some(e.booking_id);
            }
            if let Some(b) = state.bookings.get_mut(&e.booking_id) {
                b.slot = e.to_slot;
                b.sequence += 1;
            }
        }
        MeetingEvent::MeetingBookingCancelled(e) => {
            if let Some(b) = state.bookings.remove(&e.booking_id) {
                if let Some(s) = state.slots.get_mut(&b.slot) {
                    s.booking = None;
                }
            }
        }
        MeetingEvent::MeetingRoundClosed(_) => state.status = RoundStatus::Closed,
        MeetingEvent::MeetingRoundCancelled(_) => state.status = RoundStatus::Cancelled,
    }
    state
}

/// Whether `actor` is one of the guardians of a booking's children.
#[must_use]
pub fn is_booking_guardian(school: &School, booking: &BookingState, person: PersonId) -> bool {
    booking
        .child_ids
        .iter()
        .any(|c| school.is_guardian(person, *c))
}
