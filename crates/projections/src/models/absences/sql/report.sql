INSERT INTO {absences} (absence_id, child_id, school_id, group_id, from_date, to_date, reason, reported_by,
    reported_at, cancelled)
