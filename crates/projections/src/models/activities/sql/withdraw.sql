DELETE FROM {activity_volunteers} WHERE activity_id = $1 AND person_id = $2
