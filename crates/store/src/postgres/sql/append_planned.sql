-- A planned batch: checked and inserted under the global-order lock, committed in one round
-- trip (see migrations/postgres/0003_append_planned.sql).
SELECT kring_append_planned($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                            $16, $17, $18, $19)
