INSERT INTO {consent_history} (position, event_id, child_id, school_id, purpose, granted, guardian_id,
    policy_version, method, occurred_at, recorded_at, effective_after, recorded_by)
