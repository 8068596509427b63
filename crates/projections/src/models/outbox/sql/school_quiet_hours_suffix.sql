ON CONFLICT (school_id) DO UPDATE SET schedule = excluded.schedule
