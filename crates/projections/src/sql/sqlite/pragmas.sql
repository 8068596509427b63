PRAGMA page_size = 16384;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 10000;
PRAGMA wal_autocheckpoint = 4096;
PRAGMA cache_size = -16384;
PRAGMA temp_store = MEMORY;
