PRAGMA wal_autocheckpoint = 4096
