ON CONFLICT (child_id, purpose, guardian_id) DO UPDATE SET granted = excluded.granted,
    at = excluded.at, policy_version = excluded.policy_version, method = excluded.method
