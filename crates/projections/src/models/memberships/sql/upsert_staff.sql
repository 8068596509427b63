INSERT INTO {membership_staff} (school_id, person_id, role) VALUES ($1, $2, $3)
ON CONFLICT (school_id, person_id) DO UPDATE SET role = excluded.role
