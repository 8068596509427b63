SELECT group_id, school_id, name, kind, archived FROM membership_groups WHERE group_id = $1
