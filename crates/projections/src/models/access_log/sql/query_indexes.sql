CREATE INDEX {access_log}_by_subject ON {access_log} (subject_kind, subject_id, position);
CREATE INDEX {content_removals}_by_remover ON {content_removals} (remover_id, position)
