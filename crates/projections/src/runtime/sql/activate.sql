UPDATE projection_generations SET active = 1 WHERE name = $1 AND generation = $2
