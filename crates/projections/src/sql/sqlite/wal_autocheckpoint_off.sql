PRAGMA wal_autocheckpoint = 0
