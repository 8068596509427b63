INSERT INTO projection_generations (name, generation, position, active, fingerprint) VALUES ($1, $2, 0, 0, $3)
