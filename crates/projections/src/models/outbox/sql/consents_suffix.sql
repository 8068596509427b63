ON CONFLICT (child_id, purpose, guardian_id) DO UPDATE SET decision = excluded.decision
