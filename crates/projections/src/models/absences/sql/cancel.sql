UPDATE {absences} SET cancelled = 1, cancelled_by = $1, cancelled_at = $2 WHERE absence_id = $3 AND child_id = $4
