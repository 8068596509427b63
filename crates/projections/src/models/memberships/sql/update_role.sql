UPDATE {membership_staff} SET role = $1 WHERE school_id = $2 AND person_id = $3
