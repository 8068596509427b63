ALTER TABLE projection_generations ADD COLUMN fingerprint TEXT
