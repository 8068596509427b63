//! Meeting rounds' schedules: per round its slots, their staff and bookings; per staff member
//! the conversations they hold; per family the conversations booked for its children; the
//! people and children each round involves (for their data export); and the digests of
//! people's calendar feed keys.
//!
//! A round's place is stored as its sealed JSON (`Sealed<String>`), opened by whoever answers
//! with it: its words are sealed for the staff member who opened the round.
//!
//! Every event becomes statements of its own, run in order at the batch's flush; inserts ignore
//! a row that is there already, so applying a batch again after a rollback leaves one row.

use crate::bulk::{Cell, Deferred, Statement};
use crate::db::{from_micros, micros, to_i64, uuid, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::calendar::CalendarEvent;
use kring_domain::meeting::{MeetingEvent, MeetingSlot, Per, SealedPlace};
use kring_domain::{
    ChildId, Event, GroupId, MeetingBookingId, MeetingRoundId, PersonId, SchoolId, Sealed,
};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// The projection.
#[derive(Debug, Default)]
pub struct MeetingsProjection {
    deferred: Deferred,
}

/// Its name.
pub const NAME: &str = "meetings";

const SCHEMA: &str = include_str!("sql/schema.sql");
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const INSERT_ROUND: &str = include_str!("sql/insert_round.sql");
const INSERT_GROUP: &str = include_str!("sql/insert_group.sql");
const INSERT_SLOT: &str = include_str!("sql/insert_slot.sql");
const INSERT_SLOT_STAFF: &str = include_str!("sql/insert_slot_staff.sql");
const BLOCK_SLOT: &str = include_str!("sql/block_slot.sql");
const INSERT_BOOKING: &str = include_str!("sql/insert_booking.sql");
const INSERT_BOOKING_CHILD: &str = include_str!("sql/insert_booking_child.sql");
const MOVE_BOOKING: &str = include_str!("sql/move_booking.sql");
const DELETE_BOOKING_CHILDREN: &str = include_str!("sql/delete_booking_children.sql");
const DELETE_BOOKING: &str = include_str!("sql/delete_booking.sql");
const SET_STATUS: &str = include_str!("sql/set_status.sql");
const SET_KEY: &str = include_str!("sql/set_key.sql");
const INSERT_INVOLVED: &str = include_str!("sql/insert_involved.sql");

const ROUND: &str = include_str!("sql/round.sql");
const ROUND_GROUPS: &str = include_str!("sql/round_groups.sql");
const ROUND_SLOT_STAFF: &str = include_str!("sql/round_slot_staff.sql");
const ROUND_SLOTS: &str = include_str!("sql/round_slots.sql");
const SLOT_OF_MEETING: &str = include_str!("sql/slot_of_meeting.sql");
const SLOT_STAFF: &str = include_str!("sql/slot_staff.sql");
const PERSON_OF_CALENDAR_KEY: &str = include_str!("sql/person_of_calendar_key.sql");
const BOOKINGS_OF_ROUND: &str = include_str!("sql/bookings_of_round.sql");
const BOOKINGS_OF_STAFF: &str = include_str!("sql/bookings_of_staff.sql");
const BOOKINGS_OF_CHILD: &str = include_str!("sql/bookings_of_child.sql");
const ROUNDS_INVOLVING: &str = include_str!("sql/rounds_involving.sql");

/// A round's place as stored: its sealed JSON. An event of schema version 1 reaches the read
/// model upcast, its words a plain value of who opened the round (they are in the clear in the
/// log's bytes of that event too); every event written since holds them sealed.
fn place_json(place: &SealedPlace) -> Result<String, ProjectionError> {
    Ok(serde_json::to_string(place.text())?)
}

fn place_of(json: &str) -> Result<Sealed<String>, ProjectionError> {
    Ok(serde_json::from_str(json)?)
}

/// Who a meeting event involves, besides the round's opener: whoever did it, the children of
/// a booking, the staff of a slot.
fn involved(round_id: MeetingRoundId, ids: impl IntoIterator<Item = String>) -> Vec<Statement> {
    ids.into_iter()
        .map(|id| {
            Statement::new(
                INSERT_INVOLVED,
                vec![Cell::Text(round_id.to_string()), Cell::Text(id)],
            )
        })
        .collect()
}

fn slot_statements(round_id: MeetingRoundId, s: &MeetingSlot) -> Vec<Statement> {
    let mut out = vec![Statement::new(
        INSERT_SLOT,
        vec![
            Cell::Text(round_id.to_string()),
            Cell::Int(i64::from(s.slot)),
            Cell::Int(micros(s.starts_at)),
            Cell::Int(micros(s.ends_at)),
        ],
    )];
    out.extend(s.staff.iter().map(|p| {
        Statement::new(
            INSERT_SLOT_STAFF,
            vec![
                Cell::Text(round_id.to_string()),
                Cell::Int(i64::from(s.slot)),
                Cell::Text(p.to_string()),
            ],
        )
    }));
    out
}

const fn per_name(per: Per) -> &'static str {
    match per {
        Per::Child => "child",
        Per::Family => "family",
    }
}

#[async_trait]
impl Projection for MeetingsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "meeting_rounds",
            "meeting_round_groups",
            "meeting_slots",
            "meeting_slot_staff",
            "meeting_bookings",
            "meeting_booking_children",
            "meeting_involved",
            "calendar_keys",
        ]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        _tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let position = e.recorded.position;
        let at = Cell::Int(micros(e.recorded.occurred_at));
        let statements = match e.event {
            Event::Calendar(CalendarEvent::CalendarKeyIssued(k)) => vec![Statement::new(
                SET_KEY,
                vec![
                    Cell::Text(k.person_id.to_string()),
                    Cell::Text(k.key_digest.clone()),
                ],
            )],
            Event::Meeting(event) => match event {
                MeetingEvent::MeetingRoundOpened(d) => {
                    let mut out = vec![Statement::new(
                        INSERT_ROUND,
                        vec![
                            Cell::Text(d.round_id.to_string()),
                            Cell::Text(d.school_id.to_string()),
                            Cell::from(&d.title),
                            Cell::from(d.place.kind()),
                            Cell::Text(place_json(&d.place)?),
                            Cell::from(per_name(d.per)),
                            Cell::Int(micros(d.book_until)),
                            Cell::Text(d.by.to_string()),
                            at,
                            Cell::Int(to_i64(position)),
                        ],
                    )];
                    out.extend(d.group_ids.iter().map(|g| {
                        Statement::new(
                            INSERT_GROUP,
                            vec![
                                Cell::Text(d.round_id.to_string()),
                                Cell::Text(g.to_string()),
                            ],
                        )
                    }));
                    for s in &d.slots {
                        out.extend(slot_statements(d.round_id, s));
                    }
                    let staff = d.slots.iter().flat_map(|s| s.staff.iter());
                    out.extend(involved(
                        d.round_id,
                        std::iter::once(d.by.to_string()).chain(staff.map(ToString::to_string)),
                    ));
                    out
                }
                MeetingEvent::MeetingSlotAdded(d) => {
                    let mut out = slot_statements(d.round_id, &d.slot);
                    out.extend(involved(
                        d.round_id,
                        std::iter::once(d.by.to_string())
                            .chain(d.slot.staff.iter().map(ToString::to_string)),
                    ));
                    out
                }
                MeetingEvent::MeetingSlotBlocked(d) => {
                    let mut out = vec![Statement::new(
                        BLOCK_SLOT,
                        vec![
                            Cell::Text(d.round_id.to_string()),
                            Cell::Int(i64::from(d.slot)),
                        ],
                    )];
                    out.extend(involved(d.round_id, [d.by.to_string()]));
                    out
                }
                MeetingEvent::MeetingBooked(d) => {
                    let mut out = vec![Statement::new(
                        INSERT_BOOKING,
                        vec![
                            Cell::Text(d.booking_id.to_string()),
                            Cell::Text(d.round_id.to_string()),
                            Cell::Int(i64::from(d.slot)),
                            Cell::Text(d.by.to_string()),
                            at,
                        ],
                    )];
                    out.extend(d.child_ids.iter().map(|c| {
                        Statement::new(
                            INSERT_BOOKING_CHILD,
                            vec![
                                Cell::Text(d.booking_id.to_string()),
                                Cell::Text(d.round_id.to_string()),
                                Cell::Text(c.to_string()),
                            ],
                        )
                    }));
                    out.extend(involved(
                        d.round_id,
                        std::iter::once(d.by.to_string())
                            .chain(d.child_ids.iter().map(ToString::to_string)),
                    ));
                    out
                }
                MeetingEvent::MeetingMoved(d) => {
                    let mut out = vec![Statement::new(
                        MOVE_BOOKING,
                        vec![
                            Cell::Text(d.booking_id.to_string()),
                            Cell::Int(i64::from(d.to_slot)),
                            at,
                        ],
                    )];
                    out.extend(involved(d.round_id, [d.by.to_string()]));
                    out
                }
                MeetingEvent::MeetingBookingCancelled(d) => {
                    let mut out = vec![
                        Statement::new(
                            DELETE_BOOKING_CHILDREN,
                            vec![Cell::Text(d.booking_id.to_string())],
                        ),
                        Statement::new(DELETE_BOOKING, vec![Cell::Text(d.booking_id.to_string())]),
                    ];
                    out.extend(involved(d.round_id, [d.by.to_string()]));
                    out
                }
                MeetingEvent::MeetingRoundClosed(d) => {
                    let mut out = vec![Statement::new(
                        SET_STATUS,
                        vec![Cell::Text(d.round_id.to_string()), Cell::from("closed"), at],
                    )];
                    out.extend(involved(d.round_id, [d.by.to_string()]));
                    out
                }
                MeetingEvent::MeetingRoundCancelled(d) => {
                    let mut out = vec![Statement::new(
                        SET_STATUS,
                        vec![
                            Cell::Text(d.round_id.to_string()),
                            Cell::from("cancelled"),
                            at,
                        ],
                    )];
                    out.extend(involved(d.round_id, [d.by.to_string()]));
                    out
                }
            },
            _ => return Ok(()),
        };
        self.deferred.push(t, position, statements);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        self.deferred.flush(tx, t).await
    }
}

/// A round as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundView {
    /// The round.
    pub round_id: MeetingRoundId,
    /// Its school.
    pub school_id: SchoolId,
    /// Its groups.
    pub group_ids: Vec<GroupId>,
    /// Its title.
    pub title: String,
    /// `room` or `online`.
    pub place_kind: String,
    /// The room's name or the link, sealed for who opened the round.
    pub place: Sealed<String>,
    /// `child` or `family`.
    pub per: String,
    /// Guardians' deadline.
    pub book_until: DateTime<Utc>,
    /// `open`, `closed` or `cancelled`.
    pub status: String,
    /// Its slots by number.
    pub slots: Vec<SlotView>,
}

/// A slot with its booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotView {
    /// Its number.
    pub slot: u32,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Its staff.
    pub staff: Vec<PersonId>,
    /// Blocked by staff.
    pub blocked: bool,
    /// Its booking.
    pub booking: Option<BookingView>,
}

/// A booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookingView {
    /// The booking.
    pub booking_id: MeetingBookingId,
    /// Its children.
    pub child_ids: Vec<ChildId>,
    /// Who booked it.
    pub booked_by: PersonId,
    /// How often it moved.
    pub sequence: u32,
    /// When it was booked or last moved.
    pub changed_at: DateTime<Utc>,
}

/// One conversation in someone's schedule (a staff member's or a family's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meeting {
    /// The round.
    pub round_id: MeetingRoundId,
    /// Its title.
    pub title: String,
    /// `room` or `online`.
    pub place_kind: String,
    /// The room's name or the link, sealed for who opened the round.
    pub place: Sealed<String>,
    /// `open`, `closed` or `cancelled`.
    pub status: String,
    /// The slot.
    pub slot: u32,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// The slot's staff.
    pub staff: Vec<PersonId>,
    /// The booking.
    pub booking: BookingView,
}

fn u32_of(v: i64) -> Result<u32, ProjectionError> {
    u32::try_from(v)
        .map_err(|_| ProjectionError::Invalid(format!("{v} in the meetings read model")))
}

/// The round's schedule; `None` for an unknown round.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn round(
    db: &ReadDb,
    round_id: MeetingRoundId,
) -> Result<Option<RoundView>, ProjectionError> {
    let key = round_id.to_string();
    let Some(r) = sqlx::query(ROUND)
        .bind(&key)
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    let group_ids = sqlx::query(ROUND_GROUPS)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|g| Ok(GroupId::from_uuid(uuid(&g.try_get::<String, _>(0)?)?)))
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    let mut staff: BTreeMap<u32, Vec<PersonId>> = BTreeMap::new();
    for s in sqlx::query(ROUND_SLOT_STAFF)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
    {
        staff
            .entry(u32_of(s.try_get(0)?)?)
            .or_default()
            .push(PersonId::from_uuid(uuid(&s.try_get::<String, _>(1)?)?));
    }
    let mut bookings = bookings(db, BOOKINGS_OF_ROUND, &key).await?;
    let slots = sqlx::query(ROUND_SLOTS)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|s| {
            let slot = u32_of(s.try_get(0)?)?;
            Ok(SlotView {
                slot,
                starts_at: from_micros(s.try_get(1)?)?,
                ends_at: from_micros(s.try_get(2)?)?,
                staff: staff.remove(&slot).unwrap_or_default(),
                blocked: s.try_get::<i64, _>(3)? != 0,
                booking: bookings.remove(&(round_id, slot)),
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(Some(RoundView {
        round_id,
        school_id: SchoolId::from_uuid(uuid(&r.try_get::<String, _>(1)?)?),
        group_ids,
        title: r.try_get(2)?,
        place_kind: r.try_get(3)?,
        place: place_of(&r.try_get::<String, _>(4)?)?,
        per: r.try_get(5)?,
        book_until: from_micros(r.try_get(6)?)?,
        status: r.try_get(7)?,
        slots,
    }))
}

/// Bookings by (round, slot), with their children: those `query` selects for `key`.
async fn bookings(
    db: &ReadDb,
    query: &'static str,
    key: &str,
) -> Result<BTreeMap<(MeetingRoundId, u32), BookingView>, ProjectionError> {
    let mut out: BTreeMap<(MeetingRoundId, u32), BookingView> = BTreeMap::new();
    for r in sqlx::query(query).bind(key).fetch_all(db.pool()).await? {
        let key = (
            MeetingRoundId::from_uuid(uuid(&r.try_get::<String, _>(1)?)?),
            u32_of(r.try_get(2)?)?,
        );
        let child = ChildId::from_uuid(uuid(&r.try_get::<String, _>(6)?)?);
        if let Some(b) = out.get_mut(&key) {
            b.child_ids.push(child);
            continue;
        }
        out.insert(
            key,
            BookingView {
                booking_id: MeetingBookingId::from_uuid(uuid(&r.try_get::<String, _>(0)?)?),
                child_ids: vec![child],
                booked_by: PersonId::from_uuid(uuid(&r.try_get::<String, _>(3)?)?),
                sequence: u32_of(r.try_get(4)?)?,
                changed_at: from_micros(r.try_get(5)?)?,
            },
        );
    }
    Ok(out)
}

/// The conversations of the bookings `query` selects for `key`, by start.
async fn meetings_of(
    db: &ReadDb,
    query: &'static str,
    key: &str,
) -> Result<Vec<Meeting>, ProjectionError> {
    let bookings = bookings(db, query, key).await?;
    let mut out = Vec::with_capacity(bookings.len());
    for ((round_id, slot), booking) in bookings {
        let key = round_id.to_string();
        let Some(r) = sqlx::query(SLOT_OF_MEETING)
            .bind(&key)
            .bind(i64::from(slot))
            .fetch_optional(db.pool())
            .await?
        else {
            continue;
        };
        let staff = sqlx::query(SLOT_STAFF)
            .bind(&key)
            .bind(i64::from(slot))
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(|p| Ok(PersonId::from_uuid(uuid(&p.try_get::<String, _>(0)?)?)))
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        out.push(Meeting {
            round_id,
            title: r.try_get(0)?,
            place_kind: r.try_get(1)?,
            place: place_of(&r.try_get::<String, _>(2)?)?,
            status: r.try_get(3)?,
            slot,
            starts_at: from_micros(r.try_get(4)?)?,
            ends_at: from_micros(r.try_get(5)?)?,
            staff,
            booking,
        });
    }
    out.sort_by_key(|a| (a.starts_at, a.round_id, a.slot));
    Ok(out)
}

/// A staff member's booked conversations (of rounds not cancelled), by start.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn staff_schedule(
    db: &ReadDb,
    person: PersonId,
) -> Result<Vec<Meeting>, ProjectionError> {
    meetings_of(db, BOOKINGS_OF_STAFF, &person.to_string()).await
}

/// The conversations booked for any of `children` (of rounds not cancelled), by start.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn family_schedule(
    db: &ReadDb,
    children: &[ChildId],
) -> Result<Vec<Meeting>, ProjectionError> {
    let mut all: BTreeMap<MeetingBookingId, Meeting> = BTreeMap::new();
    for child in children {
        for m in meetings_of(db, BOOKINGS_OF_CHILD, &child.to_string()).await? {
            all.insert(m.booking.booking_id, m);
        }
    }
    let mut out: Vec<Meeting> = all.into_values().collect();
    out.sort_by_key(|a| (a.starts_at, a.round_id, a.slot));
    Ok(out)
}

/// The rounds that involve any of `ids` (people or children): opened, held, booked, moved,
/// cancelled or closed by them, or with a booking for them, cancelled bookings included.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn rounds_involving(
    db: &ReadDb,
    ids: &[uuid::Uuid],
) -> Result<Vec<MeetingRoundId>, ProjectionError> {
    let mut out = std::collections::BTreeSet::new();
    for id in ids {
        for r in sqlx::query(ROUNDS_INVOLVING)
            .bind(id.to_string())
            .fetch_all(db.pool())
            .await?
        {
            out.insert(MeetingRoundId::from_uuid(uuid(
                &r.try_get::<String, _>(0)?,
            )?));
        }
    }
    Ok(out.into_iter().collect())
}

/// The person whose current calendar feed key has `digest`.
///
/// # Errors
/// Database failures.
pub async fn person_of_calendar_key(
    db: &ReadDb,
    digest: &str,
) -> Result<Option<PersonId>, ProjectionError> {
    sqlx::query(PERSON_OF_CALENDAR_KEY)
        .bind(digest)
        .fetch_optional(db.pool())
        .await?
        .map(|r: AnyRow| Ok(PersonId::from_uuid(uuid(&r.try_get::<String, _>(0)?)?)))
        .transpose()
}
