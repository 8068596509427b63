INSERT INTO {outbox_meeting_bookings} (round_id, booking_id, slot, child_ids)
