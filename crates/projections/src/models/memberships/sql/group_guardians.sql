SELECT gu.guardian_id, gu.child_id, p.display_name
FROM membership_groups g
JOIN membership_children c ON c.school_id = g.school_id
JOIN membership_guardians gu ON gu.child_id = c.child_id
LEFT JOIN membership_people p ON p.person_id = gu.guardian_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR c.group_id = g.group_id)
ORDER BY gu.guardian_id, gu.child_id
