DELETE FROM {membership_group_staff} WHERE group_id = $1 AND person_id = $2
