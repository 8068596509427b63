SELECT to_regprocedure('kring_script_v1(text,text)') IS NOT NULL
