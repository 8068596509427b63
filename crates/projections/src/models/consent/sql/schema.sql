CREATE TABLE {consent_decisions} (
    child_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    granted BIGINT NOT NULL,
    at BIGINT NOT NULL,
    policy_version BIGINT NOT NULL,
    method TEXT NOT NULL,
    PRIMARY KEY (child_id, purpose, guardian_id)
){without_rowid};
CREATE TABLE {consent_history} (
    position BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted BIGINT NOT NULL,
    guardian_id TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    method TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    effective_after BIGINT NOT NULL,
    recorded_by TEXT
);
CREATE TABLE {consent_policies} (
    school_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    published_at BIGINT NOT NULL,
    purposes TEXT NOT NULL,
    PRIMARY KEY (school_id, version)
)
