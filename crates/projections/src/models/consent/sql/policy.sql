SELECT version, purposes FROM consent_policies
WHERE school_id = $1 AND published_at <= $2 ORDER BY version
