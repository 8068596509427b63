SELECT child_id, purpose, guardian_id, decision FROM {outbox_consents} WHERE child_id IN ({in})
