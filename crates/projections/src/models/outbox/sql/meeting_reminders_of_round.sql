DELETE FROM {outbox_notifications}
WHERE kind = 'meeting_reminder' AND round_id = $1 AND release_at > $2
