SELECT slot, starts_at, ends_at, blocked FROM meeting_slots WHERE round_id = $1 ORDER BY slot
