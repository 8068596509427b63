DELETE FROM {outbox_meeting_bookings} WHERE round_id = $1 AND booking_id = $2
