SELECT person_id FROM calendar_keys WHERE key_digest = $1
