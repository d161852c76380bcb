#!/usr/bin/env bash
# Set up a development environment (once) and run every check: ruff, mypy --strict (as on Linux,
# Windows and macOS), pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LAYERENV_DEV_VENV:-.venv-dev}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
export PATH="$PWD/$venv/bin:$PATH"
"$venv/bin/ruff" check layerenv tests benchmarks
"$venv/bin/mypy" --strict layerenv
# the package also runs on Windows and macOS: type-check it as there (os.uname, SIGKILL, st_blocks, ...)
"$venv/bin/mypy" --strict --platform win32 layerenv
"$venv/bin/mypy" --strict --platform darwin layerenv
"$venv/bin/python" scripts/check_fixtures.py
# two workers: most tests wait on real installers in subprocesses
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n "${LAYERENV_TEST_WORKERS:-2}" "$@"
