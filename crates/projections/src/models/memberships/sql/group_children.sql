SELECT c.child_id, c.group_id, c.first_name, c.last_initial
FROM membership_groups g
JOIN membership_children c ON c.school_id = g.school_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR c.group_id = g.group_id)
ORDER BY c.child_id
