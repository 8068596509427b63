SELECT purpose, guardian_id, granted, at, policy_version, method, school_id FROM consent_decisions WHERE child_id = $1 ORDER BY purpose, guardian_id
