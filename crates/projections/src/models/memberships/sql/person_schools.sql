SELECT sc.school_id, sc.name, sc.brin, sc.school_group_id,
    (SELECT s.role FROM membership_staff s WHERE s.school_id = sc.school_id AND s.person_id = $1) AS role,
    (SELECT COUNT(*) FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
        WHERE gu.guardian_id = $1 AND c.school_id = sc.school_id) AS guarded
FROM membership_schools sc
WHERE EXISTS (SELECT 1 FROM membership_staff s WHERE s.school_id = sc.school_id AND s.person_id = $1)
   OR EXISTS (SELECT 1 FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
        WHERE gu.guardian_id = $1 AND c.school_id = sc.school_id)
ORDER BY sc.school_id
