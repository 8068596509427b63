ON CONFLICT (post_id) DO UPDATE SET body = excluded.body, live = excluded.live, state = excluded.state
