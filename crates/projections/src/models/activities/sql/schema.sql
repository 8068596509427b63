CREATE TABLE {activities} (
    activity_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    title TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    slots BIGINT NOT NULL,
    scheduled_by TEXT NOT NULL,
    cancelled BIGINT NOT NULL,
    cancelled_by TEXT,
    cancelled_at BIGINT
);
CREATE TABLE {activity_volunteers} (
    activity_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    signed_up_at BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (activity_id, person_id)
)
