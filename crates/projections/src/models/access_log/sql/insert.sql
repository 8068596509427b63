INSERT INTO {access_log} (position, event_id, subject_kind, subject_id, accessor_kind, accessor_id,
    reason, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
