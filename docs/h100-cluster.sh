#!/bin/bash
# Issue 9 on the real H100: one shared store (lease locks, reached through two mounts), the real GPU
# node and a simulated CPU-only node, one per-node project; a CUDA matmul on the GPU node; timings.
set -x
cd "$(dirname "$0")/.." || exit 1
O=${OUT:-/tmp/cluster-out}
mkdir -p "$O"
export PYTHONPATH=$PWD/.device/site:$PWD PYTHONUNBUFFERED=1
SMI=$(command -v nvidia-smi)
NOSMI_PATH=$(echo "$PATH" | tr ':' '\n' | grep -vx "$(dirname "$SMI")" | paste -sd:)
S=/tmp/shared
mkdir -p $S/layerenv /tmp/shared-b
mount --bind $S /tmp/shared-b && echo "bind mount: /tmp/shared is also /tmp/shared-b"
export LAYERENV_HOME=$S/layerenv LAYERENV_LOCK=lease
TIMEFORMAT='wall %3R s'
lay() { python3 -m layerenv "$@"; }
gpu() { LAYERENV_NODE=h100-real "$@"; }
cpu() { LAYERENV_HOME=/tmp/shared-b/layerenv LAYERENV_NODE=cpu-sim LAYERENV_SYSROOT=$PWD/tests/fixtures/machines/no-gpu PATH=$NOSMI_PATH LAYERENV_FIND_LINKS=$PWD/.device/wheels "$@"; }
step() { echo; echo "===== $* ====="; }
MATMUL="import time, torch
t = time.perf_counter(); x = torch.rand(4096, 4096, device='cuda'); y = x @ x; torch.cuda.synchronize()
print(torch.__version__, torch.cuda.get_device_name(0), torch.__file__); print('matmul ok', tuple(y.shape), round(time.perf_counter() - t, 3), 's')"
{
  step "versions"; date -u; python3 --version; nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
  step "GPU node h100-real: adopt /opt/torch/.venv into the shared store"; time gpu lay base --adopt /opt/torch/.venv; echo "exit $?"
  step "CPU node cpu-sim (replayed no-GPU machine, store through the second mount): build its base offline"
  time cpu lay base; echo "exit $?"
  step "per-node project, created on the GPU node"; mkdir -p $S/proj; cp examples/hello/main.py $S/proj/
  time gpu lay project --per-node $S/proj; echo "exit $?"
  step "GPU node: CUDA matmul in the per-node project"; gpu $S/proj/.venv/bin/python -c "$MATMUL"; echo "exit $?"
  step "CPU node: the same project loads its node's base"
  cpu $S/proj/.venv/bin/python -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.__file__)"; echo "exit $?"
  step "a second GPU node with no record yet: its first start asks layerenv base"
  LAYERENV_NODE=h100-second $S/proj/.venv/bin/python -c "import torch; print(torch.__version__, torch.cuda.is_available())"
  LAYERENV_NODE=h100-second $S/proj/.venv/bin/python -c "import torch; print('again:', torch.__version__)"
  step "layerenv status (GPU node)"; gpu lay status
  step "layerenv doctor (GPU node)"; gpu lay doctor; echo "exit $?"
  step "layerenv doctor (CPU node)"; cpu lay doctor; echo "exit $?"
  step "layerenv gc --dry-run (GPU node)"; gpu lay gc --dry-run; echo "exit $?"
  step "store"; ls -la $S/layerenv/locks $S/layerenv/nodes/*; cat $S/layerenv/nodes/*/*.txt
  step "one-base project for comparison"; mkdir -p $S/proj1; gpu lay project --one-base $S/proj1 | tail -1
} > "$O/cluster.txt" 2>&1
gpu lay status --json > "$O/status.json" 2>&1
{
  step "python -c pass: per-node project vs one-base project vs the base itself, 20 interleaved"
  LAYERENV_NODE=h100-real python3 - <<'PY'
import statistics, subprocess, time
pythons = {"per-node": "/tmp/shared/proj/.venv/bin/python", "one base": "/tmp/shared/proj1/.venv/bin/python",
           "base": "/opt/torch/.venv/bin/python"}
for code, runs in (("pass", 20), ("import torch", 5)):
    samples = {k: [] for k in pythons}
    for _ in range(runs):
        for name, py in pythons.items():
            t = time.perf_counter(); subprocess.run([py, "-c", code], check=True); samples[name].append(time.perf_counter() - t)
    medians = {k: round(statistics.median(v) * 1000, 1) for k, v in samples.items()}
    print(code, "median ms", medians, "per-node/one base", round(medians["per-node"] / medians["one base"], 3))
PY
} > "$O/timings.txt" 2>&1
umount /tmp/shared-b
