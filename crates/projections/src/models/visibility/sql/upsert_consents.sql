INSERT INTO {visibility_consents} (child_id, purpose, guardian_id, granted, policy_version)
