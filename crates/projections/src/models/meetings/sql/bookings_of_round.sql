SELECT b.booking_id, b.round_id, b.slot, b.booked_by, b.sequence, b.changed_at, c.child_id
FROM meeting_bookings b JOIN meeting_booking_children c ON c.booking_id = b.booking_id
WHERE b.round_id = $1
ORDER BY b.booking_id, c.child_id
