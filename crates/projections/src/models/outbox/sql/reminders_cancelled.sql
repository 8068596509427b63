DELETE FROM {outbox_notifications}
WHERE kind = 'activity_reminder' AND activity_id = $1 AND release_at > $2
