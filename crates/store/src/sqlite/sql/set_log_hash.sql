UPDATE events SET log_hash = ?1 WHERE position = ?2
