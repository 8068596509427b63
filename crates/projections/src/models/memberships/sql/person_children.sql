SELECT c.child_id, c.school_id, c.group_id, c.first_name, c.last_initial
FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
WHERE gu.guardian_id = $1
ORDER BY c.child_id
