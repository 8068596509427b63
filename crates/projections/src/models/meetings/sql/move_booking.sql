UPDATE {meeting_bookings} SET slot = $2, sequence = sequence + 1, changed_at = $3 WHERE booking_id = $1
