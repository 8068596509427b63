# Sourced by scripts/test and scripts/bench: start_cluster starts a throwaway PostgreSQL
# cluster from the machine's server binaries (installing Debian's postgresql package first when
# they are missing and we are root), exports DATABASE_URL, and stops it on EXIT.

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

find_pg_bin() {
  local candidate
  if command -v pg_config >/dev/null 2>&1; then
    candidate="$(pg_config --bindir 2>/dev/null || true)"
    if [ -x "$candidate/initdb" ]; then echo "$candidate"; return 0; fi
  fi
  candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$candidate" ] && [ -x "$candidate/initdb" ]; then echo "$candidate"; return 0; fi
  return 1
}

start_cluster() {
  local bin
  if ! bin="$(find_pg_bin)"; then
    if [ "$(id -u)" = "0" ]; then
      log "PostgreSQL server binaries not found; installing Debian's postgresql package"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      bin="$(find_pg_bin)" || { log "postgresql installed but initdb still not found"; exit 1; }
    else
      log "PostgreSQL server binaries not found and not root: install postgresql or set DATABASE_URL"
      exit 1
    fi
  fi
  PG_DIR="$(mktemp -d -t kring-pg.XXXXXX)"
  local as=()
  if [ "$(id -u)" = "0" ]; then
    chown postgres:postgres "$PG_DIR"
    as=(runuser -u postgres --)
  fi
  # Tests need no durability; benchmarks (PG_DURABLE=1) measure what a deployment gets.
  local settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if [ "${PG_DURABLE:-0}" = 1 ]; then settings=""; fi
  PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR \
     $settings -c max_connections=400 -c shared_buffers=256MB" >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; exit 1; }
  PG_BIN="$bin"
  PG_AS=("${as[@]}")
  trap stop_cluster EXIT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  log "started a throwaway PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}

stop_cluster() {
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}

