#!/usr/bin/env bash
# Idempotently provide a real Docker engine and an offline base image (no registry reachable here).
# 1. docker.io + debootstrap from Debian; 2. dockerd started by hand if no daemon answers;
# 3. a Debian bookworm base image (python 3.11) built with debootstrap, tagged as the default
#    base image name so that `FROM python:3.11-slim` works without a registry.
set -euo pipefail
BASE_TAG="${MLPIPE_BASE_IMAGE:-python:3.11-slim}"
LOG_DIR="${MLPIPE_SETUP_LOG_DIR:-/tmp/mlpipe-setup}"
mkdir -p "$LOG_DIR"

say() { printf '[setup-docker] %s\n' "$*"; }

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  say "installing docker.io and debootstrap from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >"$LOG_DIR/apt.log" 2>&1 \
    || { tail -20 "$LOG_DIR/apt.log"; exit 1; }
fi

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: $LOG_DIR/dockerd.log)"
  nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$LOG_DIR/dockerd.log"; say "dockerd did not start"; exit 1; }
fi

if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  rootfs=$(mktemp -d /var/tmp/mlpipe-rootfs.XXXXXX)
  say "building base image $BASE_TAG with debootstrap from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$LOG_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$LOG_DIR/debootstrap.log"; rm -rf "$rootfs"; exit 1; }
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  # `python` on PATH, as in the official python images.
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*
  tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
  rm -rf "$rootfs"
fi
say "engine ready: $(docker version --format '{{.Server.Version}}'), base image $BASE_TAG"
