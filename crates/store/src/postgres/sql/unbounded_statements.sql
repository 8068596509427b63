-- For the rest of the transaction only: statements that are long by nature (filling in the global
-- chain over a whole log) run without the connection's statement timeout.
SET LOCAL statement_timeout = 0
