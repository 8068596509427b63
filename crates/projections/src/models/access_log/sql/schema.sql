CREATE TABLE {access_log} (
    position BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    accessor_kind TEXT NOT NULL,
    accessor_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE {access_revoked_tokens} (
    jti TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE {content_removals} (
    position BIGINT PRIMARY KEY,
    remover_id TEXT NOT NULL,
    post_id TEXT NOT NULL
)
