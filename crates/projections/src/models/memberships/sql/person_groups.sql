SELECT g.group_id, g.school_id, g.name, g.kind
FROM membership_groups g
WHERE EXISTS (SELECT 1 FROM membership_staff s WHERE s.school_id = g.school_id AND s.person_id = $1
        AND (g.kind = 'school' OR s.role = 'director'
            OR EXISTS (SELECT 1 FROM membership_group_staff a WHERE a.group_id = g.group_id AND a.person_id = s.person_id)))
   OR EXISTS (SELECT 1 FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
        WHERE gu.guardian_id = $1 AND c.school_id = g.school_id AND (g.kind = 'school' OR c.group_id = g.group_id))
ORDER BY g.school_id, g.group_id
