DELETE FROM {meeting_bookings} WHERE booking_id = $1
