CREATE INDEX {conversations}_by_child ON {conversations} (child_id);
CREATE INDEX {conversation_participants}_by_person ON {conversation_participants} (person_id);
CREATE INDEX {conversation_messages}_by_conversation ON {conversation_messages} (conversation_id, position)
