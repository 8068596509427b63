INSERT INTO {membership_people} (person_id, email) VALUES ($1, $2)
ON CONFLICT (person_id) DO UPDATE SET email = excluded.email
