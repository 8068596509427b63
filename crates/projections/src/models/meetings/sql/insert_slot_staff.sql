INSERT INTO {meeting_slot_staff} (round_id, slot, person_id) VALUES ($1, $2, $3) ON CONFLICT (round_id, slot, person_id) DO NOTHING
