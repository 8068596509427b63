ON CONFLICT (school_id) DO UPDATE SET policy = excluded.policy
