# Sourced by scripts/test: ensure_browser makes sure headless Chromium and its WebDriver are on
# PATH for the compliance console's browser test, installing Debian's chromium and
# chromium-driver packages first when they are missing and we are root. When it cannot, the
# browser test fails with the reason (it never passes without a browser).

ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = "0" ]; then
    log "chromium or chromedriver not found; installing Debian's chromium and chromium-driver"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
      || log "installing chromium failed: the console's browser test will fail"
  else
    log "chromium/chromedriver not found and not root: the console's browser test will fail"
  fi
}
