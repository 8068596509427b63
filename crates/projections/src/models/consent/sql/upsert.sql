INSERT INTO {consent_decisions} (child_id, purpose, guardian_id, school_id, granted, at, policy_version, method)
