SELECT child_id, purpose, granted, policy_version FROM visibility_consents WHERE child_id IN ({in})
