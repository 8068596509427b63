CREATE INDEX {access_log}_by_subject ON {access_log} (subject_kind, subject_id, position)
