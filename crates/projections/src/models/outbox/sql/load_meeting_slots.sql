SELECT round_id, slot, starts_at FROM {outbox_meeting_slots} WHERE round_id IN ({in})
