UPDATE {membership_invitations} SET status = 'approved',
    corrected_from = CASE WHEN child_id <> $1 THEN child_id ELSE corrected_from END,
    child_id = $1,
    group_id = COALESCE((SELECT c.group_id FROM {membership_children} c WHERE c.child_id = $1), group_id),
    updated_at = $2
WHERE invitation_id = $3
