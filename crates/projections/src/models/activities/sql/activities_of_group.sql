SELECT activity_id, school_id, group_id, title, starts_at, ends_at, slots, scheduled_by, cancelled, cancelled_at
FROM activities WHERE group_id = $1 ORDER BY starts_at, activity_id
