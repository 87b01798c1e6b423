#!/usr/bin/env bash
# Write the version locks from throwaway venvs and say what changed (old -> new).
#
#   scripts/upgrade-locks.sh                       newest releases the ranges allow (make upgrade)
#   scripts/upgrade-locks.sh --keep-versions-of V  the versions installed in venv V where the
#                                                  extra packages allow it (writing a first lock
#                                                  from the venv the suite was tested with)
#
# requirements/constraints.txt: `pip freeze --all` of a venv that installed '.[test]' (which
#   includes build and hatchling, the wheel's build tools), with pip's own version; the project
#   itself and the venv's seed setuptools are left out. The Makefile installs with
#   `-c` and `--build-constraint` from it.
# requirements/bench-constraints.txt: the same for .venv-bench (bench/tools.py's PLOOMBER_REQS),
#   a lock of its own because Ploomber 0.23 requires notebook<7 and '.[test]' notebook>=7.
# labextension/package-lock.json: `npm update` within package.json's ranges.
# Nothing is installed into the project's venv here; `make upgrade` reinstalls it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LOCK=requirements/constraints.txt
BENCH_LOCK=requirements/bench-constraints.txt
keep_from=""
if [ "${1:-}" = "--keep-versions-of" ]; then keep_from="${2:?a venv}"; fi

say() { printf '[upgrade-locks] %s\n' "$*"; }
tmp=$(mktemp -d /tmp/mlpipe-locks.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# pip's messages about this machine's unreadable extra index dirs are noise
quiet_pip() { "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }; }

freeze() {  # VENV HEADER... : the venv's freeze, what a lock holds, to stdout
  local venv="$1"; shift
  printf '# %s\n' "$@"
  printf '# Python %s on %s %s. pyproject.toml keeps ranges; this file pins one tested set.\n' \
    "$("$venv/bin/python" -c 'import platform; print(platform.python_version())')" \
    "$(uname -s)" "$(uname -m)"
  "$venv/bin/pip" freeze --all --exclude-editable --exclude mlpipe-jupyter \
    --exclude setuptools --exclude wheel --exclude distribute | LC_ALL=C sort -f
}

show_changes() {  # OLD NEW: one line per package whose pinned version changed
  "$PYTHON" - "$1" "$2" <<'EOF'
import re, sys
def pins(path):
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return {}
    found = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if m:
            found[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return found
old, new = pins(sys.argv[1]), pins(sys.argv[2])
changes = [f"  {n}: {old.get(n, '(none)')} -> {new.get(n, '(removed)')}"
           for n in sorted(old.keys() | new.keys()) if old.get(n) != new.get(n)]
print("\n".join(changes) if changes else "  no version changed")
EOF
}

mkdir -p requirements

# the project: '.[test]', build tools included
say "resolving '.[test]' in a throwaway venv${keep_from:+ (versions of $keep_from kept)}"
"$PYTHON" -m venv "$tmp/venv"
pins=()
if [ -n "$keep_from" ]; then
  "$keep_from/bin/pip" freeze --all --exclude-editable --exclude mlpipe-jupyter >"$tmp/keep.txt"
  pins=(-c "$tmp/keep.txt")
  quiet_pip "$tmp/venv/bin/pip" install -q "pip==$("$keep_from/bin/pip" --version | cut -d' ' -f2)"
else
  quiet_pip "$tmp/venv/bin/pip" install -q --upgrade pip
fi
quiet_pip "$tmp/venv/bin/pip" install -q "${pins[@]}" '.[test]'
freeze "$tmp/venv" \
  "Tested versions: make demo and make test run" \
  "  pip install -c $LOCK --build-constraint $LOCK -e '.[test]'" \
  "Written by make upgrade (scripts/upgrade-locks.sh), not by hand." >"$tmp/lock.txt"
say "$LOCK:"
show_changes "$LOCK" "$tmp/lock.txt"
cp "$tmp/lock.txt" "$LOCK"

# the benchmark's own venv: Ploomber and what bench/tools.py installs beside it
bench_reqs=$("$PYTHON" -c 'import sys; sys.path.insert(0, "bench"); import tools; print(*tools.PLOOMBER_REQS)')
say "resolving $bench_reqs (.venv-bench) in a throwaway venv"
"$PYTHON" -m venv "$tmp/bench"
quiet_pip "$tmp/bench/bin/pip" install -q --upgrade pip
# shellcheck disable=SC2086
quiet_pip "$tmp/bench/bin/pip" install -q $bench_reqs
freeze "$tmp/bench" \
  "Tested versions of .venv-bench (bench/tools.py installs its PLOOMBER_REQS with -c this)." \
  "A lock of its own: Ploomber 0.23 requires notebook<7, '.[test]' notebook>=7." \
  "Written by make upgrade (scripts/upgrade-locks.sh), not by hand." >"$tmp/bench.txt"
say "$BENCH_LOCK:"
show_changes "$BENCH_LOCK" "$tmp/bench.txt"
cp "$tmp/bench.txt" "$BENCH_LOCK"

# the JupyterLab extension's npm lock, within package.json's ranges
if [ -z "$keep_from" ]; then
  say "labextension/package-lock.json (npm update):"
  cp labextension/package-lock.json "$tmp/npm-old.json"
  (cd labextension && npm update --package-lock-only --no-audit --no-fund --loglevel=error)
  "$PYTHON" - "$tmp/npm-old.json" labextension/package-lock.json <<'EOF'
import json, sys
old, new = (json.load(open(p))["packages"] for p in sys.argv[1:3])
changes = [f"  {k.removeprefix('node_modules/')}: {old.get(k, {}).get('version', '(none)')} -> "
           f"{new.get(k, {}).get('version', '(removed)')}"
           for k in sorted(old.keys() | new.keys()) if k and
           old.get(k, {}).get("version") != new.get(k, {}).get("version")]
print("\n".join(changes) if changes else "  no version changed")
EOF
fi
