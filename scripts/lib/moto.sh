# Sourced by scripts/test (and by whatever needs an S3-compatible store for a test run):
# start_moto starts moto's S3 emulator in server mode on a free local port, from a virtual
# environment of its own (pinned in scripts/lib/moto-requirements.txt, made once in the cargo
# target directory and remade when the pin changes), creates the bucket, and exports:
#
#   KRING_TEST_S3_ENDPOINT   http://127.0.0.1:<port>, what the S3 conformance tests use
#   KRING_TEST_S3_URL        s3://kring-test/media, a KRING_MEDIA_URL for that bucket
#   AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP
#
# so that `KRING_MEDIA_URL=$KRING_TEST_S3_URL kring-api serve` stores media in it. The server is
# stopped on EXIT (stop_moto; callers with their own EXIT trap call it themselves). moto is an
# emulator, not S3: see docs/media.md for what it covers.

moto_log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

start_moto() {
  local requirements target_dir venv port
  requirements="$(dirname "${BASH_SOURCE[0]}")/moto-requirements.txt"
  target_dir="${CARGO_TARGET_DIR:-$(dirname "${BASH_SOURCE[0]}")/../../target}"
  mkdir -p "$target_dir"
  venv="$target_dir/moto-venv"
  if ! cmp -s "$requirements" "$venv/requirements.txt" \
    || ! "$venv/bin/moto_server" --help >/dev/null 2>&1; then
    moto_log "making moto's virtual environment in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
  fi
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  MOTO_LOG="$(mktemp -t kring-moto.XXXXXX.log)"
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  MOTO_PID=$!
  local i
  for i in $(seq 1 120); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      cat "$MOTO_LOG" >&2
      moto_log "moto_server exited before listening"
      return 1
    fi
    sleep 0.5
  done
  export KRING_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export KRING_TEST_S3_BUCKET="kring-test"
  export KRING_TEST_S3_URL="s3://$KRING_TEST_S3_BUCKET/media"
  export AWS_ENDPOINT_URL="$KRING_TEST_S3_ENDPOINT"
  export AWS_ACCESS_KEY_ID="moto-test-key"
  export AWS_SECRET_ACCESS_KEY="moto-test-secret"
  export AWS_REGION="us-east-1"
  export AWS_ALLOW_HTTP="true"
  # The bucket (a PUT on it, path style, unsigned: moto does not check signatures).
  python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('$KRING_TEST_S3_ENDPOINT/$KRING_TEST_S3_BUCKET', method='PUT'))" \
    || { cat "$MOTO_LOG" >&2; moto_log "could not create the test bucket"; return 1; }
  trap stop_moto EXIT
  moto_log "started moto $(sed 's/.*==//' "$requirements") (S3 emulator) on $KRING_TEST_S3_ENDPOINT"
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=""
  fi
  rm -f "${MOTO_LOG:-}"
}
