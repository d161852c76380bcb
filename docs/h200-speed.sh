#!/bin/bash
# On the real H200 (the device tool), offline: issue 19's rows with layerenv installed as users install
# it, in a venv of its own on the system Python (what `uv tool install layerenv` and pipx make), byte-
# compiled (as pip and uv compile at install), against a base adopted from /opt/torch/.venv:
#   `layerenv run python -c pass` against the project venv's own python; `detect --json` (remembered,
#   and --fresh) and `base` (reused, remembered) against `python -c pass` of layerenv's interpreter;
#   `layerenv project` on empty repos. The same commands run by the torch venv's python (python3 -m
#   layerenv, as the walkthrough does) are timed too: that interpreter's site-packages .pth hooks cost
#   it ~60 ms at every start, which no code of layerenv's can avoid.
# Run from the repo root: `bash docs/h200-speed.sh`; captures land in $OUT (tests/fixtures/h200/speed.txt).
cd "$(dirname "$0")/.." || exit 1
O=${OUT:-/tmp/h200-out}
mkdir -p "$O"
unset PYTHONDONTWRITEBYTECODE
export PYTHONUNBUFFERED=1
. docs/h200-tool.sh
{
  echo "== versions"; date -u; "$SYSTEM_PYTHON" --version; nvidia-smi -L
  make_tool_venv
  export LAYERENV_HOME=/tmp/speed-home PATH="$TOOL/bin:$PATH"
  echo "== layerenv base --adopt $TORCH_VENV"; layerenv base --adopt "$TORCH_VENV"; echo "exit $?"
  mkdir -p /tmp/speed-demo
  echo "== layerenv project /tmp/speed-demo"; layerenv project /tmp/speed-demo; echo "exit $?"
  sleep 3  # the base and its node record settle (remembered answers rest on files older than 2 s)
  layerenv base > /dev/null; layerenv detect --json > /dev/null
  layerenv project /tmp/speed-demo > /dev/null  # its base lookup remembered (cache/answers/project-base-*)
  python3 - "$TOOL/bin" "$TORCH_VENV" <<'PY'
import os, statistics, subprocess, sys, time

tool, torch_venv = sys.argv[1:3]
checkout = dict(os.environ, PYTHONPATH=f"{os.getcwd()}/.device/site:{os.getcwd()}")
def times(argv, n=21, cwd=None):
    runs = []
    env = checkout if argv[:2] == [f"{torch_venv}/bin/python", "-m"] else None  # layerenv from this checkout
    for _ in range(n):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, check=False, capture_output=True)
        runs.append((time.perf_counter() - start) * 1000)
        assert done.returncode == 0, (argv, done.stderr[-500:])
    return runs
def interleaved(commands, n=21):
    samples = {name: [] for name in commands}
    for _ in range(n):
        for name, (argv, cwd) in commands.items():
            samples[name] += times(argv, 1, cwd)
    return {name: statistics.median(values) for name, values in samples.items()}
lay, torch_lay = [f"{tool}/layerenv"], [f"{torch_venv}/bin/python", "-m", "layerenv"]
demo = "/tmp/speed-demo"
medians = interleaved({
    "tool python -c pass": ([f"{tool}/python", "-c", "pass"], None),
    "torch venv python -c pass": ([f"{torch_venv}/bin/python", "-c", "pass"], None),
    "project .venv/bin/python -c pass": ([f"{demo}/.venv/bin/python", "-c", "pass"], None),
    "layerenv run python -c pass": ([*lay, "run", "python", "-c", "pass"], demo),
    "layerenv detect --json": ([*lay, "detect", "--json"], None),
    "layerenv detect --json --fresh": ([*lay, "detect", "--json", "--fresh"], None),
    "layerenv base (reused)": ([*lay, "base"], None),
    "torch venv: layerenv run python -c pass": ([*torch_lay, "run", "python", "-c", "pass"], demo),
    "torch venv: layerenv detect --json": ([*torch_lay, "detect", "--json"], None),
    "torch venv: layerenv base (reused)": ([*torch_lay, "base"], None),
})
for name, value in medians.items():
    print(f"{name:<44} {value:7.1f} ms (median of 21, interleaved)")
own, torch_own = medians["tool python -c pass"], medians["torch venv python -c pass"]
plain = medians["project .venv/bin/python -c pass"]
print(f"run adds {medians['layerenv run python -c pass'] - plain:+.1f} ms (target <= 20 ms); "
      f"through the torch venv's python {medians['torch venv: layerenv run python -c pass'] - plain:+.1f} ms")
print(f"detect --json {medians['layerenv detect --json'] / own:.2f}x python -c pass (target <= 1.5x); "
      f"--fresh {medians['layerenv detect --json --fresh'] / own:.2f}x; through the torch venv's python "
      f"{medians['torch venv: layerenv detect --json'] / torch_own:.2f}x its own start")
print(f"base reused {medians['layerenv base (reused)'] / own:.2f}x python -c pass (target <= 1.3x); through the "
      f"torch venv's python {medians['torch venv: layerenv base (reused)'] / torch_own:.2f}x its own start")
runs = []
for index in range(9):
    folder = f"/tmp/speed-empty-{index}"
    os.makedirs(folder, exist_ok=True)
    runs += times([*lay, "project", folder], 1)
print(f"layerenv project on an empty repo: median {statistics.median(runs):.0f} ms (target <= 300 ms), "
      f"{statistics.median(runs) / own:.1f}x python -c pass (<= ~16x meets it on the slowest H200 lent), "
      f"runs {[round(value) for value in runs]}")
PY
  echo "== the base's stubs kept for its projects (layerenv.project.stub_cache)"; ls -l "$LAYERENV_HOME"/cache/stubs
  echo "== what the reused base's remembered answer rests on"
  for f in "$LAYERENV_HOME"/cache/answers/base-* "$LAYERENV_HOME"/cache/answers/project-base-*; do sed -n 2p "$f"; done
  echo "== doctor"; layerenv doctor; echo "exit $?"
} > "$O/speed.txt" 2>&1
cat "$O/speed.txt"
