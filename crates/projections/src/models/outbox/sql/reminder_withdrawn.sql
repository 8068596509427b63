DELETE FROM {outbox_notifications}
WHERE kind = 'activity_reminder' AND activity_id = $1 AND recipient_id = $2 AND release_at > $3
