DELETE FROM {outbox_notifications} WHERE release_at < $1
