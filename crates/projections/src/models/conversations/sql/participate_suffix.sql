ON CONFLICT (conversation_id, person_id) DO NOTHING
