INSERT INTO {meeting_bookings} (booking_id, round_id, slot, booked_by, sequence, changed_at) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (booking_id) DO NOTHING
