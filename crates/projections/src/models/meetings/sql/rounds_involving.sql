SELECT round_id FROM meeting_involved WHERE id = $1 ORDER BY round_id
