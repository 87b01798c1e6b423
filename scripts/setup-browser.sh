#!/usr/bin/env bash
# Idempotently provide Chromium (Debian's package; Playwright must not download its own: the
# tests launch /usr/bin/chromium through executable_path). Usage: setup-browser.sh [VENV]
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  echo "[setup-browser] installing chromium from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/tmp/mlpipe-chromium-apt.log 2>&1 \
    || { tail -20 /tmp/mlpipe-chromium-apt.log; exit 1; }
fi
echo "[setup-browser] $(/usr/bin/chromium --version 2>/dev/null | head -1)"
venv="${1:-}"
if [ -n "$venv" ]; then
  # the Python driver only (a test dependency); never `playwright install`
  "$venv/bin/python" -c "import playwright.sync_api" \
    || { echo "[setup-browser] playwright is missing from $venv: pip install -e '.[test]'"; exit 1; }
fi
