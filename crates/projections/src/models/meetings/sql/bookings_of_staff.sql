SELECT b.booking_id, b.round_id, b.slot, b.booked_by, b.sequence, b.changed_at, c.child_id
FROM meeting_bookings b JOIN meeting_booking_children c ON c.booking_id = b.booking_id
WHERE EXISTS (SELECT 1 FROM meeting_slot_staff st WHERE st.round_id = b.round_id AND st.slot = b.slot AND st.person_id = $1)
  AND EXISTS (SELECT 1 FROM meeting_rounds r WHERE r.round_id = b.round_id AND r.status <> 'cancelled')
ORDER BY b.booking_id, c.child_id
