INSERT INTO {meeting_slots} (round_id, slot, starts_at, ends_at, blocked) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (round_id, slot) DO NOTHING
