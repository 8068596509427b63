DELETE FROM {membership_guardians} WHERE child_id = $1 AND guardian_id = $2
