UPDATE {meeting_slots} SET blocked = 1 WHERE round_id = $1 AND slot = $2
