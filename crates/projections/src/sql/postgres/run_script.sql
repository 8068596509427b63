SELECT kring_script_v1($1, $2)
