CREATE TABLE {meeting_rounds} (
    round_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    title TEXT NOT NULL,
    place_kind TEXT NOT NULL,
    place TEXT NOT NULL,
    per TEXT NOT NULL,
    book_until BIGINT NOT NULL,
    status TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    position BIGINT NOT NULL
);
CREATE TABLE {meeting_round_groups} (
    round_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (round_id, group_id)
);
CREATE TABLE {meeting_slots} (
    round_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    blocked BIGINT NOT NULL,
    PRIMARY KEY (round_id, slot)
);
CREATE TABLE {meeting_slot_staff} (
    round_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (round_id, slot, person_id)
);
CREATE TABLE {meeting_bookings} (
    booking_id TEXT PRIMARY KEY,
    round_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    booked_by TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE TABLE {meeting_booking_children} (
    booking_id TEXT NOT NULL,
    round_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    PRIMARY KEY (booking_id, child_id)
);
CREATE TABLE {meeting_involved} (
    round_id TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (round_id, id)
);
CREATE TABLE {calendar_keys} (
    person_id TEXT PRIMARY KEY,
    key_digest TEXT NOT NULL
)
