UPDATE {activities} SET cancelled = 1, cancelled_by = $1, cancelled_at = $2 WHERE activity_id = $3
