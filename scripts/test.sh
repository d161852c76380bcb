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
# uv (a test dependency) installs the rest: seconds where pip's resolver takes half a minute; pip
# stays the fallback where uv cannot (uv reads no pip.conf: a machine whose index is set there only)
if [ ! -x "$venv/bin/uv" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv \
    || echo "scripts/test.sh: could not install uv; pip installs the test dependencies" >&2
fi
# (--compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, no import writes it later; the
# system's certificates, as pip uses them: a registry reached through a TLS-inspecting proxy)
if ! { [ -x "$venv/bin/uv" ] &&
       UV_SYSTEM_CERTS=1 UV_NATIVE_TLS=1 "$venv/bin/uv" pip install --quiet --compile-bytecode \
         --python "$venv/bin/python" -e '.[test]'; }; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
export PATH="$PWD/$venv/bin:$PATH"
"$venv/bin/ruff" check layerenv tests benchmarks
# the package also runs on Windows and macOS: type-check it as there (os.uname, SIGKILL, st_blocks, ...);
# side by side, each platform with its own cache (the platform is part of a cache entry: one shared
# cache would be rebuilt by each run, and written by three at once)
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
platforms=(linux win32 darwin)
pids=()
for platform in "${platforms[@]}"; do
  "$venv/bin/mypy" --strict --platform "$platform" --cache-dir ".mypy_cache/platform-$platform" layerenv \
    >"$logs/$platform" 2>&1 &
  pids+=("$!")
done
failed=0
for index in "${!platforms[@]}"; do
  status=0
  wait "${pids[$index]}" || status=$?
  echo "mypy --strict --platform ${platforms[$index]}: $(tail -n 1 "$logs/${platforms[$index]}")"
  if [ "$status" != 0 ]; then
    cat "$logs/${platforms[$index]}" >&2
    failed=1
  fi
done
[ "$failed" = 0 ]
"$venv/bin/python" scripts/check_fixtures.py
# The suite starts layerenv in hundreds of processes (108 for test_lifecycle + test_edges alone):
# compile it once here, since where PYTHONDONTWRITEBYTECODE is set (this CI image sets it) each
# process would compile every module it imports again
"$venv/bin/python" -m compileall -q layerenv tests/support >/dev/null
# two workers: most tests wait on real installers in subprocesses; loadgroup keeps each xdist_group
# (tests sharing one expensive base) on one worker, so the base is built once
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n "${LAYERENV_TEST_WORKERS:-2}" --dist loadgroup "$@"
