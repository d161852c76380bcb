#!/bin/bash
# The README quick start on the real H100, end to end, offline: adopt the preinstalled torch as the base,
# layer a project on it, run a CUDA matmul, doctor green, a shadowing CPU torch found and fixed.
set -x
cd "$(dirname "$0")/.." || exit 1
O=${OUT:-/tmp/walk-out}
mkdir -p "$O"
export PYTHONPATH=$PWD/.device/site:$PWD PYTHONUNBUFFERED=1
export LAYERENV_HOME=/tmp/layerenv-home
TIMEFORMAT='wall %3R s'
lay() { python3 -m layerenv "$@"; }
step() { echo; echo "===== $* ====="; }
{
  step "versions"; date -u; python3 --version; nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
  step "layerenv detect"; time lay detect
  step "layerenv base --adopt /opt/torch/.venv"; time lay base --adopt /opt/torch/.venv; echo "exit $?"
  step "layerenv base (reuse, x3)"; for i in 1 2 3; do time lay base; done
  step "layerenv project /tmp/demo"; mkdir -p /tmp/demo; cp examples/hello/main.py /tmp/demo/
  time lay project /tmp/demo; echo "exit $?"
  step "layerenv project /tmp/demo again (no-op)"; time lay project /tmp/demo
  step "layerenv run: CUDA matmul"
  cd /tmp/demo && time python3 -m layerenv run python -c "
import time, torch
t = time.perf_counter(); x = torch.rand(4096, 4096, device='cuda'); y = x @ x; torch.cuda.synchronize()
print(torch.__version__, torch.cuda.get_device_name(0), torch.__file__); print('matmul ok', tuple(y.shape), round(time.perf_counter() - t, 3), 's')"
  time python3 -m layerenv run python main.py; cd - >/dev/null
  step "pip list / pip check in the project"
  /tmp/demo/.venv/bin/python -m pip list 2>/dev/null | grep -iE '^(torch|torchvision|triton|nvidia-cudnn)' ; /tmp/demo/.venv/bin/python -m pip check | tail -3
  step "layerenv doctor (healthy)"; time lay doctor; echo "exit $?"; time lay doctor
  step "pip install --no-deps of a CPU torch into the project (config skipped so the guard is bypassed)"
  PIP_CONFIG_FILE=/dev/null /tmp/demo/.venv/bin/python -m pip install --no-deps --no-index .device/wheels/torch-2.11.0+cpu-py3-none-any.whl 2>&1 | tail -2
  /tmp/demo/.venv/bin/python -c "import torch; print('import torch still loads', torch.__version__, torch.cuda.is_available())"
  step "layerenv doctor (shadow)"; lay doctor; echo "exit $?"
  step "layerenv doctor --fix"; lay doctor --fix; echo "exit $?"
  /tmp/demo/.venv/bin/python -c "import torch, importlib.metadata as m; print('after fix', torch.__version__, m.version('torch'), torch.cuda.is_available())"
  step "layerenv status"; lay status
  step "layerenv rebase --dry-run"; lay rebase --dry-run; echo "exit $?"
  step "layerenv verify (hashes every file of the adopted base)"; time lay verify; echo "exit $?"
  step "layerenv doctor (after fix)"; time lay doctor; echo "exit $?"
} > "$O/walkthrough.txt" 2>&1
lay status --json > "$O/status.json" 2>&1
cp $LAYERENV_HOME/bases/*/layerenv-manifest.json "$O/adopted-manifest.json" 2>/dev/null
{
  step "import torch: base vs project, interleaved, 5 runs each"
  python3 - <<'PY'
import statistics, subprocess, time
pythons = {"base": "/opt/torch/.venv/bin/python", "project": "/tmp/demo/.venv/bin/python"}
samples = {k: [] for k in pythons}
for name, py in pythons.items():
    subprocess.run([py, "-c", "import torch"], check=True)
for _ in range(5):
    for name, py in pythons.items():
        t = time.perf_counter(); subprocess.run([py, "-c", "import torch"], check=True); samples[name].append(time.perf_counter() - t)
b, p = statistics.median(samples["base"]), statistics.median(samples["project"])
print({k: [round(x, 3) for x in v] for k, v in samples.items()})
print(f"median base {b:.3f} s, project {p:.3f} s, overhead {100 * (p / b - 1):+.1f}%")
PY
  step "benchmarks/detect.py --runs 20"; python3 benchmarks/detect.py --runs 20
} > "$O/timings.txt" 2>&1
