SELECT school_id, state FROM visibility_schools WHERE school_id IN ({in})
