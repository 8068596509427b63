INSERT INTO {calendar_keys} (person_id, key_digest) VALUES ($1, $2) ON CONFLICT (person_id) DO UPDATE SET key_digest = excluded.key_digest
