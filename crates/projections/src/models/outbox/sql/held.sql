SELECT n.notification_id, n.position, n.recipient_id, n.kind, n.conversation_id, n.message_id,
    n.created_at, n.release_at, d.notification_id, n.school_id, n.policy_version,
    n.channel, n.post_id, n.group_id, n.activity_id, n.invitation_id, n.child_id, n.absence_id,
    n.round_id, n.booking_id
FROM outbox_notifications n
LEFT JOIN notification_deliveries d ON d.notification_id = n.notification_id
WHERE n.recipient_id = $1 AND n.release_at > $2 AND d.notification_id IS NULL
ORDER BY n.release_at, n.created_at, n.position
