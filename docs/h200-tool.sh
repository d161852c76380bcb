# Sourced by docs/h200-speed.sh and docs/h200-profile.sh (from the repo root): layerenv installed as users
# install it, in a venv of its own ($TOOL) on the system Python that $TORCH_VENV was made from
# (what `uv tool install layerenv` and pipx make), byte-compiled (as pip and uv compile at install),
# started by the console script uv writes (pip's also imports re). Sets SYSTEM_PYTHON and TOOL.
TORCH_VENV=${TORCH_VENV:-/opt/torch/.venv}
SYSTEM_PYTHON=$("$TORCH_VENV"/bin/python -c "import sys; print(sys._base_executable)")
TOOL=/tmp/layerenv-tool

make_tool_venv() {
  "$SYSTEM_PYTHON" -m compileall -q -j 0 .device/site layerenv > /dev/null
  "$SYSTEM_PYTHON" -m venv --without-pip "$TOOL"
  local site
  site=$("$TOOL/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  printf '%s\n%s\n' "$PWD/.device/site" "$PWD" > "$site/layerenv-checkout.pth"
  printf '#!%s\nimport sys\nfrom layerenv.cli.entry import main\nif __name__ == "__main__":\n    sys.exit(main())\n' \
    "$TOOL/bin/python" > "$TOOL/bin/layerenv"
  chmod +x "$TOOL/bin/layerenv"
}
