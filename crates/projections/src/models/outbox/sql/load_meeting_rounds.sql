SELECT round_id, school_id FROM {outbox_meeting_rounds} WHERE round_id IN ({in})
