SELECT generation, position FROM projection_generations WHERE name = $1 AND active = 1
