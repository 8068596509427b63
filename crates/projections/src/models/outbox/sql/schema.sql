CREATE TABLE {outbox_notifications} (
    notification_id TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    recipient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT,
    message_id TEXT,
    school_id TEXT,
    policy_version BIGINT,
    created_at BIGINT NOT NULL,
    release_at BIGINT NOT NULL,
    channel TEXT NOT NULL,
    post_id TEXT,
    group_id TEXT,
    activity_id TEXT,
    invitation_id TEXT,
    child_id TEXT,
    absence_id TEXT,
    round_id TEXT,
    booking_id TEXT
);
CREATE INDEX {outbox_notifications}_by_activity ON {outbox_notifications} (activity_id, recipient_id) WHERE activity_id IS NOT NULL;
CREATE INDEX {outbox_notifications}_by_round ON {outbox_notifications} (round_id, booking_id) WHERE round_id IS NOT NULL;
CREATE INDEX {outbox_notifications}_by_release ON {outbox_notifications} (release_at);
CREATE TABLE {outbox_window} (
    id BIGINT PRIMARY KEY,
    head_at BIGINT NOT NULL,
    kept_from BIGINT NOT NULL
);
CREATE TABLE {outbox_conversations} (
    conversation_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    child_id TEXT NOT NULL
);
CREATE TABLE {outbox_participants} (
    conversation_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, person_id)
);
CREATE TABLE {outbox_staff} (
    school_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (school_id, person_id)
);
CREATE INDEX {outbox_staff}_by_person ON {outbox_staff} (person_id);
CREATE TABLE {outbox_guardians} (
    child_id TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    PRIMARY KEY (child_id, guardian_id)
);
CREATE TABLE {outbox_quiet_hours} (
    person_id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    set_at BIGINT NOT NULL
);
CREATE TABLE {outbox_school_quiet_hours} (
    school_id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL
);
CREATE TABLE {outbox_children} (
    child_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL
);
CREATE INDEX {outbox_children}_by_school ON {outbox_children} (school_id);
CREATE TABLE {outbox_policies} (
    school_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL
);
CREATE TABLE {outbox_rosters} (
    school_id TEXT PRIMARY KEY,
    roster TEXT NOT NULL
);
CREATE TABLE {outbox_preferences} (
    person_id TEXT PRIMARY KEY,
    preferences TEXT NOT NULL
);
CREATE TABLE {outbox_consents} (
    child_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    PRIMARY KEY (child_id, purpose, guardian_id)
);
CREATE TABLE {outbox_activities} (
    activity_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    starts_at BIGINT NOT NULL
);
CREATE TABLE {outbox_meeting_rounds} (
    round_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL
);
CREATE TABLE {outbox_meeting_slots} (
    round_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    starts_at BIGINT NOT NULL,
    PRIMARY KEY (round_id, slot)
);
CREATE TABLE {outbox_meeting_bookings} (
    round_id TEXT NOT NULL,
    booking_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    child_ids TEXT NOT NULL,
    PRIMARY KEY (round_id, booking_id)
)