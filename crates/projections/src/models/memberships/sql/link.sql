INSERT INTO {membership_guardians} (child_id, guardian_id, invitation_id, linked_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (child_id, guardian_id) DO NOTHING
