INSERT INTO {membership_groups} (group_id, school_id, name, kind) VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id) DO UPDATE SET school_id = excluded.school_id, name = excluded.name, kind = excluded.kind
