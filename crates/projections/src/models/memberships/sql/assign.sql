INSERT INTO {membership_group_staff} (group_id, person_id) VALUES ($1, $2) ON CONFLICT (group_id, person_id) DO NOTHING
