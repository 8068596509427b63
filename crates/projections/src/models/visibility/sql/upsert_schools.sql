INSERT INTO {visibility_schools} (school_id, state)
