CREATE INDEX {absences}_by_group ON {absences} (group_id, from_date)
