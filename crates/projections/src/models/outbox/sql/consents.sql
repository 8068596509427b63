INSERT INTO {outbox_consents} (child_id, purpose, guardian_id, decision)
