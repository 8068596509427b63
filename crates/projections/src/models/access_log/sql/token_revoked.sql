SELECT 1 FROM access_revoked_tokens WHERE jti = $1
