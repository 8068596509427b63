DELETE FROM {membership_children} WHERE child_id = $1
