CREATE TABLE {conversations} (
    conversation_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    started_position BIGINT NOT NULL
);
CREATE TABLE {conversation_participants} (
    conversation_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, person_id)
);
CREATE TABLE {conversation_messages} (
    position BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    body TEXT NOT NULL,
    at BIGINT NOT NULL
)
