SELECT s.person_id
FROM membership_groups g
JOIN membership_staff s ON s.school_id = g.school_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR s.role = 'director'
    OR EXISTS (SELECT 1 FROM membership_group_staff a WHERE a.group_id = g.group_id AND a.person_id = s.person_id))
UNION
SELECT gu.guardian_id
FROM membership_groups g
JOIN membership_children c ON c.school_id = g.school_id
JOIN membership_guardians gu ON gu.child_id = c.child_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR c.group_id = g.group_id)
ORDER BY 1
