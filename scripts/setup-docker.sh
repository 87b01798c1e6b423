#!/usr/bin/env bash
# Idempotently provide a real Docker engine and an offline base image (no registry reachable here).
# 1. docker.io + debootstrap from Debian; 2. dockerd started by hand if no daemon answers;
# 3. a Debian bookworm base image (python 3.11) built with debootstrap, tagged with a name of
#    the project's own, mlpipe-base:bookworm-py3.11 (MLPIPE_BASE_IMAGE overrides), never an
#    official image's name: a home-made `python:3.11-slim` would shadow the real one. mlpipe
#    uses it when no base-image is configured and the engine has no python:3.11-slim.
# Each part is skipped when already there; the daemon is left running for the tests.
set -euo pipefail
BASE_TAG="${MLPIPE_BASE_IMAGE:-mlpipe-base:bookworm-py3.11}"
# what earlier versions of this script tagged their image, wrongly
SHADOWING_TAG="python:3.11-slim"
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

# An image made by `docker import` (as this script does) says "Imported from -" and has one
# history entry; a pulled python:3.11-slim has its Dockerfile's history instead.
home_made() {
  [ "$(docker image inspect --format '{{.Comment}}' "$1" 2>/dev/null)" = "Imported from -" ] \
    && [ "$(docker history -q --no-trunc "$1" 2>/dev/null | wc -l)" = 1 ]
}

if [ "$BASE_TAG" != "$SHADOWING_TAG" ] && home_made "$SHADOWING_TAG"; then
  # an earlier version of this script made it: keep the image under its own name when that
  # is missing (the same debootstrap recipe; its runtime images stay valid), drop the
  # official name so that a real python:3.11-slim can be pulled or used
  if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    say "renaming the home-made $SHADOWING_TAG to $BASE_TAG"
    docker tag "$SHADOWING_TAG" "$BASE_TAG"
  fi
  say "untagging $SHADOWING_TAG: it is an image an earlier setup-docker.sh imported, not the official one"
  docker rmi "$SHADOWING_TAG" >/dev/null
fi

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
