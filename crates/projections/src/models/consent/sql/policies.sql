SELECT school_id, version, purposes FROM {consent_policies} WHERE school_id IN ({in})
