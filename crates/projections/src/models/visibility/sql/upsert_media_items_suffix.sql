ON CONFLICT (media_id) DO UPDATE SET live = excluded.live
