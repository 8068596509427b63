SELECT person_id, role FROM membership_staff WHERE school_id = $1
