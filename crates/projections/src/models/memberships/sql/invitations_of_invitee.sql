SELECT invitation_id, school_id, group_id, child_id, corrected_from, invitee_id, email, status,
    invited_by, invited_at, expires_at, updated_at
FROM membership_invitations WHERE invitee_id = $1 ORDER BY invited_at, invitation_id
