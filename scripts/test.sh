#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Debian nginx, haproxy, wrk, chromium and npm; the package with its extras; the
# pinned workerd from npm), then
# runs the linters and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v chromium >/dev/null || need_apt+=(chromium fonts-liberation)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v npm >/dev/null || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
    SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[streamlit,dev]'

# workerd (Cloudflare's Workers runtime) for tests/worker, at the version pinned in
# wsgate.worker.workerd, into the git-ignored .cache/workerd that `wsgate worker dev` finds.
workerd_version=$(python3 -c 'from wsgate.worker.workerd import WORKERD_VERSION as v; print(v)')
installed=$(node -p "require('./.cache/workerd/node_modules/workerd/package.json').version" 2>/dev/null || true)
if [[ "$installed" != "$workerd_version" ]]; then
    npm install --prefix .cache/workerd --no-save --no-audit --no-fund "workerd@$workerd_version" >/dev/null
fi

echo "== ruff"; python3 -m ruff check src tests bench
echo "== mypy --strict"; python3 -m mypy
echo "== pytest"; python3 -m pytest "$@"
