SELECT activity_id, person_id FROM activity_volunteers WHERE activity_id = $1 ORDER BY position
