INSERT INTO {membership_schools} (school_id, name, brin, school_group_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (school_id) DO UPDATE SET name = excluded.name, brin = excluded.brin, school_group_id = excluded.school_group_id
