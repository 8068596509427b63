UPDATE projection_generations SET position = $1 WHERE name = $2 AND generation = $3 AND position = $4
