UPDATE {membership_groups} SET archived = 1 WHERE group_id = $1
