CREATE TABLE IF NOT EXISTS notification_deliveries (
    notification_id TEXT PRIMARY KEY,
    delivered_at BIGINT NOT NULL
)
