SELECT s.person_id, s.role, p.display_name
FROM membership_groups g
JOIN membership_staff s ON s.school_id = g.school_id
LEFT JOIN membership_people p ON p.person_id = s.person_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR s.role = 'director'
    OR EXISTS (SELECT 1 FROM membership_group_staff a WHERE a.group_id = g.group_id AND a.person_id = s.person_id))
ORDER BY s.person_id
