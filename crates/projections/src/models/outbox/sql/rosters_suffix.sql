ON CONFLICT (school_id) DO UPDATE SET roster = excluded.roster
