INSERT INTO notification_deliveries (notification_id, delivered_at) VALUES ($1, $2)
ON CONFLICT (notification_id) DO NOTHING
