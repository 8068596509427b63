INSERT INTO {outbox_window} (id, head_at, kept_from) VALUES (0, $1, $2)
ON CONFLICT (id) DO UPDATE SET head_at = excluded.head_at, kept_from = excluded.kept_from
