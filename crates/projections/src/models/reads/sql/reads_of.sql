SELECT 'post', post_id FROM post_reads WHERE person_id = $1
UNION ALL
SELECT 'message', message_id FROM message_reads WHERE person_id = $2
