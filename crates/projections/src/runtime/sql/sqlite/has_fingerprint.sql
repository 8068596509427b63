SELECT COUNT(*) FROM pragma_table_info('projection_generations') WHERE name = 'fingerprint'
