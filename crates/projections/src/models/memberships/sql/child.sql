SELECT child_id, school_id, group_id, first_name, last_initial FROM membership_children WHERE child_id = $1
