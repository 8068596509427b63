SELECT head_at FROM outbox_window WHERE id = 0
