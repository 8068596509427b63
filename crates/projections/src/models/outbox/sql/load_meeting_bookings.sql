SELECT round_id, booking_id, slot, child_ids FROM {outbox_meeting_bookings} WHERE round_id IN ({in})
