SELECT guardian_id FROM membership_guardians WHERE child_id = $1 ORDER BY guardian_id
