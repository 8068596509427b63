SELECT generation, position, fingerprint FROM projection_generations WHERE name = $1 AND active = 1
