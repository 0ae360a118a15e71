#!/usr/bin/env bash
# Idempotent setup: redis-server (apt, when missing), a virtualenv in .venv and the
# package with every extra; with --tests also chromium and chromium-driver for the
# browser tests (`make test`; `make run` does not need a browser). Re-running it is
# cheap: pip runs again only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

for_tests=false
case "${1:-}" in
  --tests) for_tests=true ;;
  "") ;;
  *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server with apt-get" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
  # Debian starts a system redis on 6379; Fusebox's tests start their own.
fi

# The console's browser tests (tests/browser) drive Debian's chromium through Debian's
# chromedriver; Selenium Manager never downloads either. fonts-liberation (only a
# Recommends of chromium) gives the pages and the docs' screenshots the same fonts everywhere.
if $for_tests && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  echo "bootstrap: installing chromium and chromium-driver with apt-get" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-liberation >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi

stamp=.venv/.fusebox-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing fusebox[dev] into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # Before it was fusebox-resilience, the package was named "fusebox" (a name taken on
  # the public index); an old install would still provide top-level agent/controlplane.
  .venv/bin/python -m pip uninstall -q -y fusebox 2>/dev/null || true
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
