CREATE INDEX {meeting_bookings}_by_round ON {meeting_bookings} (round_id, slot);
CREATE INDEX {meeting_booking_children}_by_child ON {meeting_booking_children} (child_id);
CREATE INDEX {meeting_slot_staff}_by_person ON {meeting_slot_staff} (person_id);
CREATE INDEX {meeting_involved}_by_id ON {meeting_involved} (id);
CREATE INDEX {calendar_keys}_by_digest ON {calendar_keys} (key_digest)
