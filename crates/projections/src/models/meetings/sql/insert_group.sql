INSERT INTO {meeting_round_groups} (round_id, group_id) VALUES ($1, $2) ON CONFLICT (round_id, group_id) DO NOTHING
