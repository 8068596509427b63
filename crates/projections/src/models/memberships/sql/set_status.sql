UPDATE {membership_invitations} SET status = $1, updated_at = $2 WHERE invitation_id = $3
