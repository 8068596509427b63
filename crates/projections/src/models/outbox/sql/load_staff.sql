SELECT school_id, person_id FROM {outbox_staff} WHERE person_id IN ({in})
