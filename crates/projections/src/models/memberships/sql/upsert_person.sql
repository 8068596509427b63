INSERT INTO {membership_people} (person_id, display_name, email) VALUES ($1, $2, $3)
ON CONFLICT (person_id) DO UPDATE SET display_name = excluded.display_name, email = excluded.email
