INSERT INTO {outbox_notifications} (notification_id, position, recipient_id, kind, conversation_id,
    message_id, school_id, policy_version, created_at, release_at, channel, post_id, group_id, activity_id,
    invitation_id, child_id, absence_id, round_id, booking_id)
