ON CONFLICT (child_id, purpose, guardian_id) DO UPDATE SET granted = excluded.granted,
    policy_version = excluded.policy_version
