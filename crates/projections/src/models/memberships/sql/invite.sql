INSERT INTO {membership_invitations} (invitation_id, school_id, group_id, child_id, invitee_id, email, status,
    invited_by, invited_at, expires_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $8)
ON CONFLICT (invitation_id) DO NOTHING
