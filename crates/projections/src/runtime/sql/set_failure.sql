UPDATE projection_generations SET failure = $1 WHERE name = $2 AND generation = $3
