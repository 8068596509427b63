SELECT head_at, kept_from FROM {outbox_window} WHERE id = 0
