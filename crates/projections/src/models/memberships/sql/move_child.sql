UPDATE {membership_children} SET group_id = $1 WHERE child_id = $2
