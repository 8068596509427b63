INSERT INTO {membership_children} (child_id, school_id, group_id, first_name, last_initial) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (child_id) DO UPDATE SET school_id = excluded.school_id, group_id = excluded.group_id,
    first_name = excluded.first_name, last_initial = excluded.last_initial
