UPDATE {membership_children} SET first_name = $1, last_initial = $2 WHERE child_id = $3
