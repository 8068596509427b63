INSERT INTO {activities} (activity_id, school_id, group_id, title, starts_at, ends_at, slots, scheduled_by, cancelled)
