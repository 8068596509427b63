SELECT r.title, r.place_kind, r.place, r.status, s.starts_at, s.ends_at
FROM meeting_rounds r JOIN meeting_slots s ON s.round_id = r.round_id
WHERE r.round_id = $1 AND s.slot = $2
