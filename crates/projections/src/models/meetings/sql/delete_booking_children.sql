DELETE FROM {meeting_booking_children} WHERE booking_id = $1
