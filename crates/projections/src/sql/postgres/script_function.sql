-- Runs the statements of a read model's `Script` (crate::bulk) in order, in one call: one round
-- trip for many statements, with every value still bound. `statements` is a JSON array of
-- statement texts; each names its values as elements of `arguments`, a JSON array bound as its
-- `$1` (`($1->>0)` for text, `(($1->>0)::int8)` for an integer). A failing statement fails the
-- call with its own error; the ones after it do not run.
CREATE OR REPLACE FUNCTION kring_script_v1(statements text, arguments text) RETURNS void
LANGUAGE plpgsql AS $body$
DECLARE
    texts jsonb := statements::jsonb;
    args jsonb := arguments::jsonb;
BEGIN
    FOR i IN 0 .. jsonb_array_length(texts) - 1 LOOP
        EXECUTE texts ->> i USING args;
    END LOOP;
END
$body$
