#!/usr/bin/env bash
# Idempotently provide Chromium (Debian's package; Playwright must not download its own).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  echo "[setup-browser] installing chromium from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/tmp/mlpipe-chromium-apt.log 2>&1 \
    || { tail -20 /tmp/mlpipe-chromium-apt.log; exit 1; }
fi
echo "[setup-browser] $(/usr/bin/chromium --version 2>/dev/null | head -1)"
