DELETE FROM {membership_group_staff}
WHERE person_id = $1 AND group_id IN (SELECT group_id FROM {membership_groups} WHERE school_id = $2)
