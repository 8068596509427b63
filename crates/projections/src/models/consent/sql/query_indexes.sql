CREATE INDEX {consent_history}_by_child ON {consent_history} (child_id, purpose, occurred_at)
