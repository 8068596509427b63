SELECT invitation_id FROM membership_invitations
WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2
