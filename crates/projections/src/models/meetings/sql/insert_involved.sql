INSERT INTO {meeting_involved} (round_id, id) VALUES ($1, $2) ON CONFLICT (round_id, id) DO NOTHING
