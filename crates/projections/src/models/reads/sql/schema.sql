CREATE TABLE {read_posts} (
    post_id TEXT PRIMARY KEY
);
CREATE TABLE {read_messages} (
    message_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    position BIGINT NOT NULL
);
CREATE TABLE {post_reads} (
    post_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    read_at BIGINT NOT NULL,
    PRIMARY KEY (post_id, person_id)
){without_rowid};
CREATE INDEX {post_reads}_by_person ON {post_reads} (person_id, post_id);
CREATE TABLE {message_reads} (
    message_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    read_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, person_id)
){without_rowid};
CREATE INDEX {message_reads}_by_person ON {message_reads} (person_id, message_id)
