DELETE FROM {membership_identities} WHERE person_id = $1
