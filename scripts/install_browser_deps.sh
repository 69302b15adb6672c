#!/usr/bin/env bash
# Install what `decovlm serve` and its browser test need, idempotently, on a Debian machine:
#   - into the venv ($1, default .venv): gradio and playwright (Playwright for Python only; its
#     browser download `playwright install` is NOT used - it needs the network and fails in CI);
#   - with apt (skipped when /usr/bin/chromium exists): Debian's chromium, which the test drives
#     through Playwright with executable_path=/usr/bin/chromium.
# The venv's torch is held at its installed version (a constraint), so nothing here replaces it.
#
#   bash scripts/install_browser_deps.sh [VENV]
set -euo pipefail

VENV="${1:-.venv}"
GRADIO_SPEC="${GRADIO_SPEC:-gradio>=6,<7}"
PLAYWRIGHT_SPEC="${PLAYWRIGHT_SPEC:-playwright>=1.45,<2}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "install_browser_deps: no virtual environment at $VENV (expected $PY); create it first (make install)" >&2
    exit 1
fi

# -- Python packages -------------------------------------------------------------------------
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
torch_version="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if [ -n "$torch_version" ]; then
    echo "torch==$torch_version" > "$constraints"
fi
# The project's lock, when run from a checkout: the same versions as `make test` installs.
lock="$(dirname "$0")/../requirements/lock.txt"
if [ -f "$lock" ]; then
    grep -v '^torch==' "$lock" >> "$constraints"
fi
if "$PY" - "$GRADIO_SPEC" "$PLAYWRIGHT_SPEC" <<'PYCHECK' 2>/dev/null; then
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
for spec in sys.argv[1:]:
    req = Requirement(spec)
    if not req.specifier.contains(version(req.name), prereleases=True):
        raise SystemExit(1)
PYCHECK
    echo "install_browser_deps: $GRADIO_SPEC and $PLAYWRIGHT_SPEC already installed in $VENV"
else
    "$PY" -m pip install -q -c "$constraints" "$GRADIO_SPEC" "$PLAYWRIGHT_SPEC"
fi
"$PY" -c 'import gradio, playwright.sync_api, importlib.metadata as m; print("install_browser_deps: gradio", gradio.__version__, "playwright", m.version("playwright"))'

# -- Chromium (Debian package) ---------------------------------------------------------------
if [ -x /usr/bin/chromium ]; then
    echo "install_browser_deps: /usr/bin/chromium present, apt skipped"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "install_browser_deps: /usr/bin/chromium is missing and apt-get needs root (run as root or install sudo)" >&2
            exit 1
        fi
    fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1 || true
