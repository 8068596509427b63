INSERT INTO {consent_policies} (school_id, version, published_at, purposes)
