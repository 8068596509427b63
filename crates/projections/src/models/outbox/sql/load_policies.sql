SELECT school_id, policy FROM {outbox_policies} WHERE school_id IN ({in})
