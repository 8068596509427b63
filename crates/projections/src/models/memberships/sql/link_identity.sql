INSERT INTO {membership_identities} (digest, person_id, issuer) VALUES ($1, $2, $3)
ON CONFLICT (digest) DO NOTHING
