INSERT INTO {meeting_booking_children} (booking_id, round_id, child_id) VALUES ($1, $2, $3) ON CONFLICT (booking_id, child_id) DO NOTHING
