CREATE TABLE IF NOT EXISTS projection_generations (
    name TEXT NOT NULL,
    generation BIGINT NOT NULL,
    position BIGINT NOT NULL,
    active BIGINT NOT NULL,
    failure TEXT,
    fingerprint TEXT,
    PRIMARY KEY (name, generation)
)
