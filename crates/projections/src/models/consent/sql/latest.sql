SELECT child_id, purpose, guardian_id, granted, policy_version FROM {consent_decisions} WHERE child_id IN ({in})
