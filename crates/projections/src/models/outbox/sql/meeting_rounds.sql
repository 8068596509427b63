INSERT INTO {outbox_meeting_rounds} (round_id, school_id)
