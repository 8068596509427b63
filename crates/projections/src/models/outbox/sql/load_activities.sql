SELECT activity_id, school_id, group_id, starts_at FROM {outbox_activities} WHERE activity_id IN ({in})
