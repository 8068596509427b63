CREATE INDEX {outbox_notifications}_by_recipient ON {outbox_notifications} (recipient_id, release_at)
