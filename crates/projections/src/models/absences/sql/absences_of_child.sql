SELECT absence_id, child_id, school_id, group_id, from_date, to_date, reason, reported_by, reported_at,
    cancelled, cancelled_by, cancelled_at
FROM absences
WHERE child_id = $1
ORDER BY from_date, absence_id
