INSERT INTO {access_revoked_tokens} (jti, position, at) VALUES ($1, $2, $3)
ON CONFLICT (jti) DO NOTHING
