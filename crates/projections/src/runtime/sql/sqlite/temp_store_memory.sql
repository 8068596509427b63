PRAGMA temp_store = MEMORY
