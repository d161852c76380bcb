#!/bin/bash
# On the real H200 (the device tool), offline: what detect reads, the first run with no index
# (what it suggests, how fast), 16 concurrent adopts of the preinstalled torch, a project on the
# adopted base running CUDA through `layerenv run`, and the timings users wait for.
# Captures land in $OUT; tests/fixtures/h200/ keeps them (see its README).
set -x
cd "$(dirname "$0")/.." || exit 1
O=${OUT:-/tmp/h200-out}
mkdir -p "$O"
export PYTHONPATH=$PWD/.device/site:$PWD PYTHONUNBUFFERED=1
TIMEFORMAT='wall %3R s'
lay() { python3 -m layerenv "$@"; }
step() { echo; echo "===== $* ====="; }
{
  step "versions"; date -u; python3 --version; nvidia-smi -L
  nvidia-smi --query-gpu=index,name,compute_cap,driver_version,pci.bus_id,uuid --format=csv,noheader
  step "layerenv detect"; time lay detect
  step "layerenv detect --explain"; lay detect --explain
  uuid=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)
  for v in "" 0 1 "$uuid"; do step "CUDA_VISIBLE_DEVICES='$v' layerenv detect"; CUDA_VISIBLE_DEVICES=$v lay detect; done
} > "$O/detect.txt" 2>&1
lay detect --json > "$O/detect.json" 2> "$O/detect-json.err"
{
  step "the first run on an empty store, PyTorch's index unreachable (no network here)"
  python3 - <<'PY'
import os, subprocess, sys, time
env = dict(os.environ, LAYERENV_HOME="/tmp/first-run-home")
started = time.monotonic()
proc = subprocess.Popen([sys.executable, "-m", "layerenv", "base"], env=env, stderr=subprocess.PIPE, text=True)
first = None
lines = []
for line in proc.stderr:
    if first is None:
        first = time.monotonic() - started
    lines.append(line.rstrip())
code = proc.wait()
print("\n".join(lines))
print(f"exit {code}; first stderr line after {first:.2f} s; done after {time.monotonic() - started:.2f} s")
PY
} > "$O/first-run.txt" 2>&1
{
  step "16 concurrent layerenv base --adopt /opt/torch/.venv on an empty store"
  export LAYERENV_HOME=/tmp/adopt-home
  start=$(date +%s.%N)
  for i in $(seq 16); do (lay base --adopt /opt/torch/.venv > /tmp/adopt-$i.out 2>&1; echo "exit $?" >> /tmp/adopt-$i.out) & done
  wait
  end=$(date +%s.%N)
  echo "16 adopts took $(python3 -c "print(round($end - $start, 1))") s"
  cat /tmp/adopt-*.out | sort | uniq -c
  ls $LAYERENV_HOME/bases $LAYERENV_HOME/registry 2>&1
  step "a project on the adopted base"; mkdir -p /tmp/demo; cp examples/hello/main.py /tmp/demo/
  time lay project /tmp/demo; echo "exit $?"
  step "layerenv run: a CUDA matmul"
  cd /tmp/demo && python3 -m layerenv run python -c "
import time, torch
t = time.perf_counter(); x = torch.rand(4096, 4096, device='cuda'); y = x @ x; torch.cuda.synchronize()
print(torch.__version__, torch.cuda.get_device_name(0), torch.__file__); print('matmul ok', tuple(y.shape), round(time.perf_counter() - t, 3), 's')"
  cd - >/dev/null
  step "layerenv status"; lay status
  step "layerenv doctor"; lay doctor; echo "exit $?"
} > "$O/adopt.txt" 2>&1
{
  step "timings: layerenv run vs the venv's python, layerenv project, detect, base reuse (medians)"
  python3 - <<'PY'
import os, shutil, statistics, subprocess, sys, time
def median(argv, n=15, cwd=None, env=None):
    runs = []
    for _ in range(n):
        t = time.perf_counter(); subprocess.run(argv, cwd=cwd, env=env, check=False, capture_output=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000
env = dict(os.environ, LAYERENV_HOME="/tmp/adopt-home")
lay = [sys.executable, "-m", "layerenv"]
py = "/tmp/demo/.venv/bin/python"
plain = median([py, "-c", "pass"])
run = median([*lay, "run", "python", "-c", "pass"], cwd="/tmp/demo", env=env)
exe = shutil.which("python3")
own = median([sys.executable, "-c", "pass"])
print(f"run: layerenv run python -c pass {run:.1f} ms vs {py} -c pass {plain:.1f} ms (+{run - plain:.1f} ms)")
print(f"detect --json: {median([*lay, 'detect', '--json'], env=env):.1f} ms; base (reuse): "
      f"{median([*lay, 'base'], env=env):.1f} ms; python -c pass of this interpreter: {own:.1f} ms")
runs = []
for i in range(7):
    d = f"/tmp/empty-{i}"; os.makedirs(d, exist_ok=True)
    t = time.perf_counter(); subprocess.run([*lay, "project", d], env=env, check=True, capture_output=True)
    runs.append(time.perf_counter() - t)
print(f"project on an empty repo: median {statistics.median(runs):.2f} s, runs {[round(r, 2) for r in runs]}")
PY
} > "$O/timings.txt" 2>&1
cp /tmp/adopt-home/bases/*/layerenv-manifest.json "$O/adopted-manifest.json" 2>/dev/null
ls -la "$O"
