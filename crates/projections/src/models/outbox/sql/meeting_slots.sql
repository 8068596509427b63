INSERT INTO {outbox_meeting_slots} (round_id, slot, starts_at)
