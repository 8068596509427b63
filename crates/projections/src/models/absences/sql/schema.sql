CREATE TABLE {absences} (
    absence_id TEXT PRIMARY KEY,
    child_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    from_date TEXT NOT NULL,
    to_date TEXT NOT NULL,
    reason TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reported_at BIGINT NOT NULL,
    cancelled BIGINT NOT NULL,
    cancelled_by TEXT,
    cancelled_at BIGINT
);
CREATE INDEX {absences}_by_child ON {absences} (child_id, from_date)
