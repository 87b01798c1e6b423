#!/usr/bin/env bash
# Idempotently provide a real Docker engine and an offline base image (no registry reachable here).
# 1. docker.io + debootstrap from Debian; 2. dockerd started by hand if no daemon answers;
# 3. a Debian bookworm base image (python 3.11) built with debootstrap, tagged as the default
#    base image name so that `FROM python:3.11-slim` works without a registry.
# Each part is skipped when already there; the daemon is left running for the tests.
set -euo pipefail
BASE_TAG="${MLPIPE_BASE_IMAGE:-python:3.11-slim}"
LOG_DIR="${MLPIPE_SETUP_LOG_DIR:-/tmp/mlpipe-setup}"
mkdir -p "$LOG_DIR"

say() { printf '[setup-docker] %s\n' "$*"; }
die() { say "$*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  say "installing docker.io and debootstrap from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap \
    >"$LOG_DIR/apt.log" 2>&1 || { tail -20 "$LOG_DIR/apt.log"; die "apt-get install failed"; }
fi

if ! docker info >/dev/null 2>&1; then
  # a daemon killed earlier leaves its pid file behind, and a new one refuses to start
  pidfile=/var/run/docker.pid
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
    say "removing the stale $pidfile"
    as_root rm -f "$pidfile"
  fi
  say "starting dockerd (log: $LOG_DIR/dockerd.log)"
  as_root nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$LOG_DIR/dockerd.log"; die "dockerd did not start"; }
fi

apt_mirror() {
  # the mirror apt already uses (no host name is written into the repo)
  local found=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    found=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$found" ] && [ -f /etc/apt/sources.list ]; then
    found=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  printf '%s' "$found"
}

if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  mirror=$(apt_mirror)
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  rootfs=$(mktemp -d /var/tmp/mlpipe-rootfs.XXXXXX)
  trap 'as_root rm -rf "$rootfs"' EXIT
  say "building base image $BASE_TAG with debootstrap from $mirror (about a minute)"
  as_root debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$LOG_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$LOG_DIR/debootstrap.log"; die "debootstrap failed"; }
  # pip inside containers must trust what this machine trusts (a proxy's CA, say)
  as_root cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  # `python` on PATH, as in the official python images.
  as_root ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  as_root rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*
  as_root tar -C "$rootfs" -c . \
    | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
fi

# what the runtime image build needs from a base: python3 with venv
docker run --rm --network none "$BASE_TAG" python3 -c 'import venv, ensurepip' \
  || die "base image $BASE_TAG has no python3 with venv and ensurepip; remove it (docker rmi $BASE_TAG) and run this again"
say "engine ready: $(docker version --format '{{.Server.Version}}'), base image $BASE_TAG"
