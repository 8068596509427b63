-- The last event of each of the given streams (?1: JSON array of stream names).
SELECT e.stream, e.version, e.hash
FROM events e
JOIN (SELECT stream, MAX(version) AS version
      FROM events
      WHERE stream IN (SELECT value FROM json_each(?1))
      GROUP BY stream) last
  ON e.stream = last.stream AND e.version = last.version
