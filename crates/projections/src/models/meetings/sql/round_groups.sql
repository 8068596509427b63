SELECT group_id FROM meeting_round_groups WHERE round_id = $1 ORDER BY group_id
