SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'projection_generations' AND column_name = 'fingerprint'
