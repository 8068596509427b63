SELECT position, event_id, subject_kind, subject_id, accessor_kind, accessor_id, reason, at
FROM access_log
WHERE subject_kind = $1 AND subject_id = $2 AND position > $3
ORDER BY position
LIMIT $4
