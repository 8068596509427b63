SELECT slot, person_id FROM meeting_slot_staff WHERE round_id = $1 ORDER BY slot, person_id
