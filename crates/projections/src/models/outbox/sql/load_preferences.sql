SELECT person_id, preferences FROM {outbox_preferences} WHERE person_id IN ({in})
