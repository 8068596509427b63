CREATE INDEX {read_messages}_by_conversation ON {read_messages} (conversation_id, position)
