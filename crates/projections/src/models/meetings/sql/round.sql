SELECT round_id, school_id, title, place_kind, place, per, book_until, status FROM meeting_rounds WHERE round_id = $1
