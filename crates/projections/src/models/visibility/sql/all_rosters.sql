SELECT state FROM visibility_schools
