INSERT INTO {group_audience} (group_id, person_id)
