UPDATE {meeting_rounds} SET status = $2, changed_at = $3 WHERE round_id = $1
