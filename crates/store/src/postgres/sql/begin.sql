-- Each statement must see what committed before it started, in particular everything committed
-- before the advisory lock was granted: READ COMMITTED, whatever the database's default is.
BEGIN ISOLATION LEVEL READ COMMITTED
