CREATE INDEX {outbox_notifications}_by_release ON {outbox_notifications} (release_at);
CREATE INDEX {outbox_notifications}_by_recipient ON {outbox_notifications} (recipient_id, release_at)
