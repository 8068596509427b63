SELECT school_id, roster FROM {outbox_rosters} WHERE school_id IN ({in})
