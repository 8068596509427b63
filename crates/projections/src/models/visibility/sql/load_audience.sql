SELECT group_id, person_id FROM {group_audience} WHERE group_id IN ({in})
