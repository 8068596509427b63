UPDATE projection_generations SET active = 0 WHERE name = $1
