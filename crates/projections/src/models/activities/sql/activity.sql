SELECT activity_id, school_id, group_id, title, starts_at, ends_at, slots, scheduled_by, cancelled, cancelled_at
FROM activities WHERE activity_id = $1
