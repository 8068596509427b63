ON CONFLICT (person_id) DO UPDATE SET preferences = excluded.preferences
