SELECT absence_id, child_id, school_id, group_id, from_date, to_date, reason, reported_by, reported_at,
    cancelled, cancelled_by, cancelled_at
FROM absences
WHERE group_id = $1 AND from_date <= $2 AND to_date >= $2 AND cancelled = 0
ORDER BY child_id, from_date, absence_id
