#!/bin/bash
# On the real H200 (the device tool), offline: compiled torch extensions in a layered project.
#  1. a project whose package is a setup.py CUDAExtension (CppExtension without nvcc), built by
#     `layerenv project` against the adopted base (its [build-system] needs torch: isolation off),
#     run on the GPU; the extension record layerenv keeps; `doctor --json` (green: built against the
#     base's torch); `rebase --dry-run --json` (nothing to do);
#  2. doctor on the same project with the record saying another torch (flagged, with its fix), and
#     with no record at all (its ELF symbols checked against the real libtorch: green), timed;
#  3. a torch.utils.cpp_extension.load_inline module built in the project: where torch put it, and
#     what doctor says (nothing: it is torch's JIT cache, outside the venv; see README "Compiled extensions").
# Run from the repo root: `bash docs/h200-extension.sh`; captures land in $OUT (tests/fixtures/h200-extension/).
set -x
cd "$(dirname "$0")/.." || exit 1
O=${OUT:-/tmp/h200-ext-out}
mkdir -p "$O"
PY=/opt/torch/.venv/bin/python
export PYTHONPATH=$PWD/.device/site:$PWD PYTHONUNBUFFERED=1
export LAYERENV_HOME=$(mktemp -d /tmp/ext-home.XXXX)
# the base's ninja (and nvcc, where a CUDA toolkit wheel put one there) for torch's extension builds
export PATH=$PATH:/opt/torch/.venv/bin
TIMEFORMAT='wall %3R s'
lay() { "$PY" -m layerenv "$@"; }
step() { echo; echo "===== $* ====="; }
P=/tmp/extdemo
rm -rf "$P"; mkdir -p "$P/extdemo"
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then KIND=cuda; else KIND=cpp; fi
cat > "$P/pyproject.toml" <<'TOML'
[project]
name = "extdemo"
version = "0.1"

[build-system]
requires = ["setuptools", "torch"]
build-backend = "setuptools.build_meta"
TOML
cat > "$P/extdemo/__init__.py" <<'PYEOF'
import torch  # loads libtorch/libc10 first, as every extension needs
from extdemo import _ops  # noqa: E402
add_one = _ops.add_one
PYEOF
cat > "$P/ops.cpp" <<'CPP'
#include <torch/extension.h>
torch::Tensor add_one_cuda(torch::Tensor x);
torch::Tensor add_one(torch::Tensor x) {
#ifdef WITH_CUDA
  if (x.is_cuda()) return add_one_cuda(x);
#endif
  return x + 1;
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("add_one", &add_one); }
CPP
cat > "$P/ops_cuda.cu" <<'CU'
#include <torch/extension.h>
__global__ void add_one_kernel(const float* x, float* y, int64_t n) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] + 1.0f;
}
torch::Tensor add_one_cuda(torch::Tensor x) {
  auto y = torch::empty_like(x);
  int64_t n = x.numel();
  add_one_kernel<<<(n + 255) / 256, 256>>>(x.data_ptr<float>(), y.data_ptr<float>(), n);
  return y;
}
CU
cat > "$P/setup.py" <<PYEOF
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
if "$KIND" == "cuda":
    ext = CUDAExtension("extdemo._ops", ["ops.cpp", "ops_cuda.cu"], define_macros=[("WITH_CUDA", None)])
else:
    ext = CppExtension("extdemo._ops", ["ops.cpp"])
setup(packages=["extdemo"], ext_modules=[ext], cmdclass={"build_ext": BuildExtension})
PYEOF
{
  step "versions"; date -u; "$PY" --version; nvidia-smi -L; command -v nvcc g++ ninja; echo "extension kind: $KIND"
  "$PY" -c "import torch, setuptools; print(torch.__version__, torch.version.cuda, 'setuptools', setuptools.__version__)"
  step "layerenv base --adopt /opt/torch/.venv"; time lay base --adopt /opt/torch/.venv; echo "exit $?"
  step "layerenv project $P (the package compiles against the base's torch)"; time lay project "$P"; echo "exit $?"
  step "the extension runs"
  (cd "$P" && "$PY" -m layerenv run python -c "
import torch, extdemo
x = torch.arange(4, dtype=torch.float32, device='cuda' if '$KIND' == 'cuda' else 'cpu')
print('add_one', extdemo.add_one(x).tolist(), 'on', x.device, 'torch', torch.__version__, 'from', torch.__file__)")
  echo "exit $?"
  step "what the .so links (readelf -d)"; find "$P" "$P/.venv" -name '_ops*.so' | head -3 | xargs -r -n1 readelf -d | grep NEEDED
  step "the extension record in $P/.venv/layerenv-project.json"
  "$PY" -c "import json; d = json.load(open('$P/.venv/layerenv-project.json')); print(json.dumps(d.get('extensions'), indent=1))"
  step "layerenv doctor --json (built against the base's torch: no extension finding)"; time lay doctor --json; echo "exit $?"
  step "layerenv rebase --dry-run --json"; lay rebase --dry-run --json; echo "exit $?"
} > "$O/extension.txt" 2>&1
lay doctor --json > "$O/doctor.json" 2> "$O/doctor.err"
cp "$P/.venv/layerenv-project.json" "$O/layerenv-project.json"
{
  step "the record says another torch: doctor flags it"
  cp "$P/.venv/layerenv-project.json" /tmp/state.bak
  "$PY" - "$P/.venv/layerenv-project.json" <<'PYEOF'
import json, sys
path = sys.argv[1]; d = json.load(open(path))
for item in d.get("extensions", {}).values(): item["torch"] = "2.9.1+cu128"
json.dump(d, open(path, "w"))
PYEOF
  time lay doctor --json; echo "exit $?"
  step "no record at all (installed by hand): its ELF symbols are checked against the base's libtorch"
  "$PY" - "$P/.venv/layerenv-project.json" <<'PYEOF'
import json, sys
path = sys.argv[1]; d = json.load(open(path)); d.pop("extensions", None); d.pop("scanned", None)
json.dump(d, open(path, "w"))
PYEOF
  time lay doctor --json; echo "exit $?"
  "$PY" -c "
import time
from pathlib import Path
from layerenv.project.extensions import base_exports, find_extensions
t = time.perf_counter(); found = find_extensions(Path('$P/.venv'), {}); t1 = time.perf_counter() - t
print('found', [(e.name, e.objects, len(e.symbols)) for e in found], f'{t1 * 1000:.1f} ms')
import torch; site = Path(torch.__file__).parent.parent
t = time.perf_counter(); exports = base_exports(site); t2 = time.perf_counter() - t
print('base exports', len(exports or ()), 'c10/at/torch symbols', f'{t2 * 1000:.1f} ms')
for e in found: print(e.name, 'missing', sorted(e.symbols - (exports or frozenset()))[:5])
"
  cp /tmp/state.bak "$P/.venv/layerenv-project.json"
} > "$O/doctor-stale.txt" 2>&1
{
  step "torch.utils.cpp_extension.load_inline in the project"
  (cd "$P" && "$PY" -m layerenv run python -c "
import time, torch
from torch.utils import cpp_extension
t = time.perf_counter()
m = cpp_extension.load_inline('inline_demo', cpp_sources='torch::Tensor twice(torch::Tensor x) { return x * 2; }', functions=['twice'], verbose=False)
print('twice', m.twice(torch.arange(3)).tolist(), f'built in {time.perf_counter() - t:.1f} s')
print('module file', m.__file__)
print('build root', cpp_extension._get_build_directory('inline_demo', verbose=False))
")
  echo "exit $?"
  step "its build.ninja names the base's include paths (a move to another base changes them: ninja rebuilds)"
  grep -m2 -o -- '-isystem [^ ]*' ~/.cache/torch_extensions/*/inline_demo/build.ninja
  step "layerenv doctor --json"; lay doctor --json; echo "exit $?"
} > "$O/load-inline.txt" 2>&1
ls -la "$O"
