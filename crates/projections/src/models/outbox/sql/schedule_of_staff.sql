SELECT q.schedule FROM outbox_quiet_hours q
WHERE q.person_id = $1 AND EXISTS (SELECT 1 FROM outbox_staff s WHERE s.person_id = q.person_id)
