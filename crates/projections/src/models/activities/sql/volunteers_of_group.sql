SELECT v.activity_id, v.person_id
FROM activity_volunteers v JOIN activities a ON a.activity_id = v.activity_id
WHERE a.group_id = $1
ORDER BY v.activity_id, v.position
