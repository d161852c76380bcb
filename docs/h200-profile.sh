#!/bin/bash
# On the real H200 (the device tool), offline: where `layerenv project` spends its time on a base adopted
# from /opt/torch/.venv (cProfile, -X importtime, the syscalls when strace is there), and
# benchmarks/rebase.py on that machine's disk. Same set-up as docs/h200-speed.sh (layerenv in a venv of
# its own on the system Python, byte-compiled). Run from the repo root: `bash docs/h200-profile.sh`;
# captures land in $OUT.
cd "$(dirname "$0")/.." || exit 1
O=${OUT:-/tmp/h200-out}
mkdir -p "$O"
unset PYTHONDONTWRITEBYTECODE
. docs/h200-tool.sh
{
  echo "== versions"; date -u; "$SYSTEM_PYTHON" --version; nproc; df -T /tmp | tail -1; mount | grep -E ' / | /tmp ' | head -3
  make_tool_venv
  export LAYERENV_HOME=/tmp/profile-home PATH="$TOOL/bin:$PATH"
  echo "== adopt"; layerenv base --adopt "$TORCH_VENV" > /dev/null; echo "exit $?"
  for i in 0 1 2 3 4; do mkdir -p /tmp/prof-$i; done
  layerenv project /tmp/prof-0 > /dev/null
  echo "== project, timed"
  for i in 1 2 3; do s=$(date +%s%N); layerenv project /tmp/prof-$i > /dev/null; e=$(date +%s%N); echo "$(( (e - s) / 1000000 )) ms"; done
  echo "== stubs in a project venv: $(ls -d /tmp/prof-1/.venv/lib/python3*/site-packages/*.dist-info | wc -l)"
  "$TOOL/bin/python" -m cProfile -o "$O/project.prof" -m layerenv project /tmp/prof-4 > /dev/null
  "$TOOL/bin/python" - "$O/project.prof" <<'PY'
import pstats, sys
stats = pstats.Stats(sys.argv[1])
stats.sort_stats("cumulative").print_stats(45)
stats.sort_stats("tottime").print_stats(25)
PY
  rm -rf /tmp/prof-4/.venv
  echo "== importtime (top cumulative)"
  "$TOOL/bin/python" -X importtime -m layerenv project /tmp/prof-4 2>&1 >/dev/null | sort -t'|' -k2 -rn | head -25
  if command -v strace > /dev/null; then
    rm -rf /tmp/prof-4/.venv
    echo "== strace -c -f"; strace -c -f -o "$O/strace.txt" "$TOOL/bin/python" -m layerenv project /tmp/prof-4 > /dev/null
    head -25 "$O/strace.txt"
  fi
  echo "== rebase benchmark (the machine's /tmp)"
  for i in 1 2; do "$TOOL/bin/python" benchmarks/rebase.py 2>&1 | tail -3; done
  echo "== rebase benchmark (tmpfs)"
  TMPDIR=/dev/shm "$TOOL/bin/python" benchmarks/rebase.py 2>&1 | tail -3
} > "$O/profile.txt" 2>&1
tail -5 "$O/profile.txt"
