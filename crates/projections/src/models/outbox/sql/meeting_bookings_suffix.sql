ON CONFLICT (round_id, booking_id) DO UPDATE SET slot = excluded.slot, child_ids = excluded.child_ids
