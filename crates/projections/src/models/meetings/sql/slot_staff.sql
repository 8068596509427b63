SELECT person_id FROM meeting_slot_staff WHERE round_id = $1 AND slot = $2 ORDER BY person_id
