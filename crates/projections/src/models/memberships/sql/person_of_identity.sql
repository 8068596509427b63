SELECT person_id FROM membership_identities WHERE digest = $1
