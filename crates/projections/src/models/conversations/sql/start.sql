INSERT INTO {conversations} (conversation_id, school_id, child_id, started_by,
    started_at, started_position)
