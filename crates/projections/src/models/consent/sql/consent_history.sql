SELECT event_id, position, purpose, granted, guardian_id, policy_version, method, occurred_at, recorded_at, effective_after, recorded_by
FROM consent_history
WHERE child_id = $1 AND ($2 = '' OR purpose = $2) AND occurred_at >= $3 AND occurred_at < $4
ORDER BY position
