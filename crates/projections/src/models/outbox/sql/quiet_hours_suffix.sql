ON CONFLICT (person_id) DO UPDATE SET schedule = excluded.schedule, set_at = excluded.set_at
