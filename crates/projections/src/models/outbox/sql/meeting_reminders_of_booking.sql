DELETE FROM {outbox_notifications}
WHERE kind = 'meeting_reminder' AND round_id = $1 AND booking_id = $2 AND release_at > $3
