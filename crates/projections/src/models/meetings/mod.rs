//! Meeting rounds' schedules: per round its slots, their staff and bookings; per staff member
//! the conversations they hold; per family the conversations booked for its children; and the
//! digests of people's calendar feed keys.
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
use kring_domain::meeting::{MeetingEvent, MeetingSlot, Per, Place};
use kring_domain::{ChildId, Event, GroupId, MeetingBookingId, MeetingRoundId, PersonId, SchoolId};
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

const INSERT_ROUND: &str = "INSERT INTO {meeting_rounds} (round_id, school_id, title, place_kind, place, per, book_until, status, opened_by, changed_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10) ON CONFLICT (round_id) DO NOTHING";
const INSERT_GROUP: &str = "INSERT INTO {meeting_round_groups} (round_id, group_id) VALUES ($1, $2) ON CONFLICT (round_id, group_id) DO NOTHING";
const INSERT_SLOT: &str = "INSERT INTO {meeting_slots} (round_id, slot, starts_at, ends_at, blocked) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (round_id, slot) DO NOTHING";
const INSERT_SLOT_STAFF: &str = "INSERT INTO {meeting_slot_staff} (round_id, slot, person_id) VALUES ($1, $2, $3) ON CONFLICT (round_id, slot, person_id) DO NOTHING";
const BLOCK_SLOT: &str = "UPDATE {meeting_slots} SET blocked = 1 WHERE round_id = $1 AND slot = $2";
const INSERT_BOOKING: &str = "INSERT INTO {meeting_bookings} (booking_id, round_id, slot, booked_by, sequence, changed_at) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (booking_id) DO NOTHING";
const INSERT_BOOKING_CHILD: &str = "INSERT INTO {meeting_booking_children} (booking_id, round_id, child_id) VALUES ($1, $2, $3) ON CONFLICT (booking_id, child_id) DO NOTHING";
const MOVE_BOOKING: &str = "UPDATE {meeting_bookings} SET slot = $2, sequence = sequence + 1, changed_at = $3 WHERE booking_id = $1";
const DELETE_BOOKING_CHILDREN: &str =
    "DELETE FROM {meeting_booking_children} WHERE booking_id = $1";
const DELETE_BOOKING: &str = "DELETE FROM {meeting_bookings} WHERE booking_id = $1";
const SET_STATUS: &str =
    "UPDATE {meeting_rounds} SET status = $2, changed_at = $3 WHERE round_id = $1";
const SET_KEY: &str = "INSERT INTO {calendar_keys} (person_id, key_digest) VALUES ($1, $2) ON CONFLICT (person_id) DO UPDATE SET key_digest = excluded.key_digest";

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
                    let (kind, place) = match &d.place {
                        Place::Room { name } => ("room", name),
                        Place::Online { url } => ("online", url),
                    };
                    let mut out = vec![Statement::new(
                        INSERT_ROUND,
                        vec![
                            Cell::Text(d.round_id.to_string()),
                            Cell::Text(d.school_id.to_string()),
                            Cell::from(&d.title),
                            Cell::from(kind),
                            Cell::from(place),
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
                    out
                }
                MeetingEvent::MeetingSlotAdded(d) => slot_statements(d.round_id, &d.slot),
                MeetingEvent::MeetingSlotBlocked(d) => vec![Statement::new(
                    BLOCK_SLOT,
                    vec![
                        Cell::Text(d.round_id.to_string()),
                        Cell::Int(i64::from(d.slot)),
                    ],
                )],
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
                    out
                }
                MeetingEvent::MeetingMoved(d) => vec![Statement::new(
                    MOVE_BOOKING,
                    vec![
                        Cell::Text(d.booking_id.to_string()),
                        Cell::Int(i64::from(d.to_slot)),
                        at,
                    ],
                )],
                MeetingEvent::MeetingBookingCancelled(d) => vec![
                    Statement::new(
                        DELETE_BOOKING_CHILDREN,
                        vec![Cell::Text(d.booking_id.to_string())],
                    ),
                    Statement::new(DELETE_BOOKING, vec![Cell::Text(d.booking_id.to_string())]),
                ],
                MeetingEvent::MeetingRoundClosed(d) => vec![Statement::new(
                    SET_STATUS,
                    vec![Cell::Text(d.round_id.to_string()), Cell::from("closed"), at],
                )],
                MeetingEvent::MeetingRoundCancelled(d) => vec![Statement::new(
                    SET_STATUS,
                    vec![
                        Cell::Text(d.round_id.to_string()),
                        Cell::from("cancelled"),
                        at,
                    ],
                )],
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
    /// The room's name or the link.
    pub place: String,
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
    /// The room's name or the link.
    pub place: String,
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
    let Some(r) = sqlx::query(
        "SELECT round_id, school_id, title, place_kind, place, per, book_until, status FROM meeting_rounds WHERE round_id = $1",
    )
    .bind(&key)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let group_ids = sqlx::query(
        "SELECT group_id FROM meeting_round_groups WHERE round_id = $1 ORDER BY group_id",
    )
    .bind(&key)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|g| Ok(GroupId::from_uuid(uuid(&g.try_get::<String, _>(0)?)?)))
    .collect::<Result<Vec<_>, ProjectionError>>()?;
    let mut staff: BTreeMap<u32, Vec<PersonId>> = BTreeMap::new();
    for s in sqlx::query("SELECT slot, person_id FROM meeting_slot_staff WHERE round_id = $1 ORDER BY slot, person_id")
        .bind(&key)
        .fetch_all(db.pool())
        .await?
    {
        staff
            .entry(u32_of(s.try_get(0)?)?)
            .or_default()
            .push(PersonId::from_uuid(uuid(&s.try_get::<String, _>(1)?)?));
    }
    let mut bookings = bookings_where(db, "b.round_id = $1", std::slice::from_ref(&key)).await?;
    let slots = sqlx::query("SELECT slot, starts_at, ends_at, blocked FROM meeting_slots WHERE round_id = $1 ORDER BY slot")
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
        place: r.try_get(4)?,
        per: r.try_get(5)?,
        book_until: from_micros(r.try_get(6)?)?,
        status: r.try_get(7)?,
        slots,
    }))
}

/// Bookings by (round, slot), with their children, of the bookings matching `filter` (over
/// `meeting_bookings b`, binding `binds`).
async fn bookings_where(
    db: &ReadDb,
    filter: &str,
    binds: &[String],
) -> Result<BTreeMap<(MeetingRoundId, u32), BookingView>, ProjectionError> {
    let sql = format!(
        "SELECT b.booking_id, b.round_id, b.slot, b.booked_by, b.sequence, b.changed_at, c.child_id \
         FROM meeting_bookings b JOIN meeting_booking_children c ON c.booking_id = b.booking_id \
         WHERE {filter} ORDER BY b.booking_id, c.child_id"
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let mut out: BTreeMap<(MeetingRoundId, u32), BookingView> = BTreeMap::new();
    for r in q.fetch_all(db.pool()).await? {
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

/// The conversations of the bookings matching `filter`, by start.
async fn meetings_where(
    db: &ReadDb,
    filter: &str,
    binds: &[String],
) -> Result<Vec<Meeting>, ProjectionError> {
    let bookings = bookings_where(db, filter, binds).await?;
    let mut out = Vec::with_capacity(bookings.len());
    for ((round_id, slot), booking) in bookings {
        let key = round_id.to_string();
        let Some(r) = sqlx::query(
            "SELECT r.title, r.place_kind, r.place, r.status, s.starts_at, s.ends_at \
             FROM meeting_rounds r JOIN meeting_slots s ON s.round_id = r.round_id \
             WHERE r.round_id = $1 AND s.slot = $2",
        )
        .bind(&key)
        .bind(i64::from(slot))
        .fetch_optional(db.pool())
        .await?
        else {
            continue;
        };
        let staff = sqlx::query(
            "SELECT person_id FROM meeting_slot_staff WHERE round_id = $1 AND slot = $2 ORDER BY person_id",
        )
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
            place: r.try_get(2)?,
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
    meetings_where(
        db,
        "EXISTS (SELECT 1 FROM meeting_slot_staff st WHERE st.round_id = b.round_id AND st.slot = b.slot AND st.person_id = $1) \
         AND EXISTS (SELECT 1 FROM meeting_rounds r WHERE r.round_id = b.round_id AND r.status <> 'cancelled')",
        &[person.to_string()],
    )
    .await
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
        for m in meetings_where(
            db,
            "b.booking_id IN (SELECT bc.booking_id FROM meeting_booking_children bc WHERE bc.child_id = $1) \
             AND EXISTS (SELECT 1 FROM meeting_rounds r WHERE r.round_id = b.round_id AND r.status <> 'cancelled')",
            &[child.to_string()],
        )
        .await?
        {
            all.insert(m.booking.booking_id, m);
        }
    }
    let mut out: Vec<Meeting> = all.into_values().collect();
    out.sort_by_key(|a| (a.starts_at, a.round_id, a.slot));
    Ok(out)
}

/// The person whose current calendar feed key has `digest`.
///
/// # Errors
/// Database failures.
pub async fn person_of_calendar_key(
    db: &ReadDb,
    digest: &str,
) -> Result<Option<PersonId>, ProjectionError> {
    sqlx::query("SELECT person_id FROM calendar_keys WHERE key_digest = $1")
        .bind(digest)
        .fetch_optional(db.pool())
        .await?
        .map(|r: AnyRow| Ok(PersonId::from_uuid(uuid(&r.try_get::<String, _>(0)?)?)))
        .transpose()
}
