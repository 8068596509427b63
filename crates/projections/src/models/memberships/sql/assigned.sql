SELECT person_id FROM membership_group_staff WHERE group_id = $1
