SELECT q.schedule FROM outbox_staff s
JOIN outbox_school_quiet_hours q ON q.school_id = s.school_id
WHERE s.person_id = $1 ORDER BY s.school_id LIMIT 1
