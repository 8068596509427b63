ON CONFLICT (school_id) DO UPDATE SET state = excluded.state
