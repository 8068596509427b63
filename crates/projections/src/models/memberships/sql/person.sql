SELECT display_name, email FROM membership_people WHERE person_id = $1
