DELETE FROM {membership_guardians} WHERE child_id = $1
