SELECT position, event_id, subject_kind, subject_id, accessor_kind, accessor_id, reason, at
FROM access_log
WHERE position > $1
ORDER BY position
LIMIT $2
