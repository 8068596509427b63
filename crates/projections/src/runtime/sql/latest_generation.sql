SELECT MAX(generation) FROM projection_generations WHERE name = $1
