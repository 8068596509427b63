SELECT invitation_id, school_id, group_id, child_id, corrected_from, invitee_id, email, status,
    invited_by, invited_at, expires_at, updated_at
FROM membership_invitations WHERE group_id = $1
    AND ($2 = '' OR (invited_at, invitation_id) >
        (SELECT a.invited_at, a.invitation_id FROM membership_invitations a WHERE a.invitation_id = $2))
ORDER BY invited_at, invitation_id
LIMIT $3
