#!/usr/bin/env bash
# The two commands of the README, on a fresh Debian/Ubuntu machine:
#   ./dashboard.sh up     install what is missing, then run the stack natively
#   ./dashboard.sh test   install what the tests need, then run the whole test suite
set -euo pipefail
# Paths the user gives `up` (--grafana-tarball, --state-dir, --cache-dir...) are relative to where
# they ran it; this script works in the repository and goes back there to start the stack.
CALLER_DIR=$PWD
cd "$(dirname "$0")"

VENV=${WORDSLAB_DASHBOARD_VENV:-.venv}

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages, installed only when their command is missing.
apt_install_missing() {
  local missing=()
  local pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%=*}; pkg=${pair#*=}
    # /usr/sbin (nginx) is often outside a normal user's PATH.
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The floor is pyproject's requires-python; checked on every run against the Python that will
# run the stack (the venv's once it exists), so an old venv is caught too.
check_python() {
  local py=$1 need found
  need=$(sed -n 's/^requires-python = ">=\([0-9.]*\)".*/\1/p' pyproject.toml)
  found=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) || {
    echo "wordslab-dashboard needs Python >= $need: no working '$py' found (install python3)" >&2; exit 1; }
  if ! printf '%s\n%s\n' "$need" "$found" | sort -V -C; then
    echo "wordslab-dashboard needs Python >= $need, found Python $found at $(command -v "$py")" >&2
    [ "$py" = python3 ] || echo "remove $VENV to recreate it with a newer python3" >&2
    exit 1
  fi
  echo "Python $found at $(command -v "$py") (needs >= $need)"
}

python_ok() {
  if [ -x "$VENV/bin/python" ]; then check_python "$VENV/bin/python"; else check_python python3; fi
}

# The venv is (re)installed only when pyproject.toml changed since the last install (a
# stamp in the venv holds its sha256 and the extra), so a restart needs no package index.
python_env() {
  local extra=$1 stamp="$VENV/.wordslab-dashboard-installed" log="$VENV/pip-install.log" want have
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || {
      apt_install_missing "python3-venv=python3-venv"; python3 -m venv "$VENV"; }
  fi
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  have=$(cat "$stamp" 2>/dev/null || true)
  # A venv installed with the test extra also serves `up` (no extra).
  if [ "$have" = "$want $extra" ] || { [ -z "$extra" ] && [ "${have%% *}" = "$want" ]; }; then
    return 0
  fi
  echo "installing the Python packages into $VENV (first start or pyproject.toml changed)"
  # pip's and setuptools' chatter goes to a log, shown only when the install fails.
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip \
         && "$VENV/bin/python" -m pip install -q -e ".$extra"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "dashboard.sh: installing the Python packages failed (log: $log). Without network," \
         "point PIP_INDEX_URL or PIP_FIND_LINKS at a reachable index or wheel folder." >&2
    exit 1
  fi
  echo "$want $extra" >"$stamp"
}

case "${1:-}" in
  up)
    shift
    python_ok
    apt_install_missing git=git prometheus=prometheus prometheus-alertmanager=prometheus-alertmanager nginx=nginx
    python_env ""
    runner="$(cd "$VENV/bin" && pwd)/wordslab-dashboard"
    cd "$CALLER_DIR"
    exec "$runner" up "$@"
    ;;
  test)
    shift
    python_ok
    apt_install_missing git=git prometheus=prometheus promtool=prometheus prometheus-alertmanager=prometheus-alertmanager \
      prometheus-node-exporter=prometheus-node-exporter sqlite3=sqlite3 chromium=chromium docker-compose=docker-compose \
      nginx=nginx
    python_env "[test]"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: $0 up [wordslab-dashboard up options] | test [pytest options]" >&2
    exit 2
    ;;
esac
