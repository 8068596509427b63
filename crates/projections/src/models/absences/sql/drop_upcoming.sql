DELETE FROM {absences} WHERE child_id = $1 AND to_date >= $2
