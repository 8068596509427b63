CREATE TABLE {visibility_schools} (
    school_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE {visibility_consents} (
    child_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    granted BIGINT NOT NULL,
    policy_version BIGINT NOT NULL,
    PRIMARY KEY (child_id, purpose, guardian_id)
){without_rowid};
CREATE TABLE {feed_posts} (
    post_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    body TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    live BIGINT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE {media_items} (
    media_id TEXT PRIMARY KEY,
    post_id TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    live BIGINT NOT NULL
);
CREATE TABLE {group_audience} (
    group_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (group_id, person_id)
);
CREATE INDEX {group_audience}_by_person ON {group_audience} (person_id, group_id)
