UPDATE {membership_invitations} SET group_id = $1 WHERE child_id = $2 AND status IN ('pending', 'accepted')
