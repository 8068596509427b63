INSERT INTO {activity_volunteers} (activity_id, person_id, signed_up_at, position) VALUES ($1, $2, $3, $4)
ON CONFLICT (activity_id, person_id) DO NOTHING
