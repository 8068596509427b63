INSERT INTO {outbox_preferences} (person_id, preferences)
