CREATE INDEX {activities}_by_group ON {activities} (group_id, starts_at);
CREATE INDEX {activity_volunteers}_by_person ON {activity_volunteers} (person_id)
