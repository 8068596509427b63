DELETE FROM {group_audience} WHERE group_id = $1 AND person_id IN ({in})
