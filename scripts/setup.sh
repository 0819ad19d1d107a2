#!/bin/sh
# Installs what `npm run demo` and `npm test` need, or says exactly what to install.
# Idempotent and quiet when everything is already there.
set -e
cd "$(dirname "$0")/.."

need_major=20
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt "$need_major" ]; then
  echo "troupe needs Node.js >= $need_major (found $(node -v 2>/dev/null || echo none))." >&2
  exit 1
fi

# npm dependencies: install when missing or when package-lock.json changed since the last install.
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "troupe: installing npm dependencies (npm ci)..." >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

missing=""
command -v nats-server >/dev/null 2>&1 || missing="$missing nats-server"
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
# The approver page's browser test and the terminal approver's test drive real programs.
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "troupe: installing$missing from apt..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >&2
  else
    echo "troupe needs:$missing. Install with: sudo apt-get install$missing" >&2
    echo "(or set NATS_URL to an existing NATS server with JetStream enabled;" >&2
    echo " without chromium or tmux the browser and terminal tests are skipped)" >&2
    case "$missing" in *nats-server*) [ -n "$NATS_URL" ] || exit 1 ;; esac
  fi
fi
