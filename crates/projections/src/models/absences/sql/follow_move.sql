UPDATE {absences} SET group_id = $1 WHERE child_id = $2 AND to_date >= $3
