#!/usr/bin/env bash
# Install layerenv, build this machine's torch base, layer a project on it, say how to activate it.
#
#   bash scripts/install.sh [--variant NAME] [--python SPEC] [--project PATH] [--source SPEC]
#                           [--no-project] [--reinstall]
#
# Idempotent: a second run reuses the installed layerenv, the base and the project venv.
# Exit codes: 0 done; 2 bad arguments (also when layerenv itself rejects its input); 1 a step failed.
set -eu

prog="install.sh"

usage() {
  cat <<'EOF'
usage: install.sh [options]

Install layerenv (with pipx when present, else into a private virtualenv), then run
`layerenv base` and `layerenv project`, and print how to activate the project's venv.

options:
  --variant NAME    torch variant for the base (cu128, rocm6.4, cpu, ...); default: detected
  --python SPEC     interpreter for the base and the project: a version (3.12) or a path;
                    a path is also used to create layerenv's own virtualenv
  --project PATH    project to layer on the base (default: the current directory)
  --source SPEC     what to pip-install as layerenv: a path or a requirement
                    (default: the checkout this script lives in, else `layerenv` from the index)
  --no-project      stop after the base
  --reinstall       install layerenv again even when it is already installed
  -h, --help        show this help

environment:
  LAYERENV_TOOL_HOME  layerenv's private virtualenv
                      (default: ${XDG_DATA_HOME:-$HOME/.local/share}/layerenv-tool)
  LAYERENV_*          every layerenv setting (LAYERENV_HOME, LAYERENV_INDEX_URL, ...) passes through
EOF
}

die() { # die CODE MESSAGE
  printf '%s: error: %s\n' "$prog" "$2" >&2
  exit "$1"
}

say() { printf '%s\n' "$*"; }

need_value() { # need_value OPTION REMAINING_ARG_COUNT
  if [ "$2" -lt 2 ]; then
    die 2 "option $1 needs a value (see --help)"
  fi
}

variant=""
python_spec=""
project="."
source_spec=""
do_project=1
reinstall=0

while [ "$#" -gt 0 ]; do
  case "$1" in
    --variant) need_value "$1" "$#"; variant="$2"; shift 2 ;;
    --variant=*) variant="${1#*=}"; shift ;;
    --python) need_value "$1" "$#"; python_spec="$2"; shift 2 ;;
    --python=*) python_spec="${1#*=}"; shift ;;
    --project) need_value "$1" "$#"; project="$2"; shift 2 ;;
    --project=*) project="${1#*=}"; shift ;;
    --source) need_value "$1" "$#"; source_spec="$2"; shift 2 ;;
    --source=*) source_spec="${1#*=}"; shift ;;
    --no-project) do_project=0; shift ;;
    --reinstall) reinstall=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die 2 "unknown argument '$1' (allowed: --variant, --python, --project, --source, --no-project, --reinstall, --help)" ;;
  esac
done

for value in "$variant" "$python_spec" "$project" "$source_spec"; do
  case "$value" in
    -*) die 2 "option value '$value' looks like an option (see --help)" ;;
  esac
done
[ -n "$project" ] || die 2 "--project needs a non-empty path"

# --- what to install as layerenv ----------------------------------------------------------------
if [ -z "$source_spec" ]; then
  script_dir="$(cd "$(dirname "$0")" 2>/dev/null && pwd)" || script_dir=""
  if [ -n "$script_dir" ] && [ -f "$script_dir/../pyproject.toml" ] \
    && grep -q '^name = "layerenv"' "$script_dir/../pyproject.toml"; then
    source_spec="$(cd "$script_dir/.." && pwd)"
  else
    source_spec="layerenv"
  fi
elif [ -d "$source_spec" ]; then
  source_spec="$(cd "$source_spec" && pwd)"
fi

# --- an interpreter for layerenv itself ----------------------------------------------------------
case "$python_spec" in
  */*)
    [ -x "$python_spec" ] || die 2 "--python '$python_spec' is not an executable file"
    tool_python="$python_spec"
    ;;
  *)
    tool_python=""
    for candidate in python3 python; do
      if command -v "$candidate" >/dev/null 2>&1; then
        tool_python="$(command -v "$candidate")"
        break
      fi
    done
    ;;
esac

# --- 1. install layerenv -------------------------------------------------------------------------
layerenv_bin=""
bin_dir="$HOME/.local/bin"

if command -v pipx >/dev/null 2>&1; then
  if [ "$reinstall" -eq 0 ] && pipx list --short 2>/dev/null | grep -q '^layerenv '; then
    say "layerenv: already installed with pipx ($(pipx list --short 2>/dev/null | grep '^layerenv ' || true))"
  else
    say "layerenv: installing $source_spec with pipx"
    pipx install --force "$source_spec" || die 1 "pipx install $source_spec failed"
  fi
  pipx_bin="$(pipx environment --value PIPX_BIN_DIR 2>/dev/null || true)"
  if [ -n "$pipx_bin" ] && [ -x "$pipx_bin/layerenv" ]; then
    layerenv_bin="$pipx_bin/layerenv"
    bin_dir="$pipx_bin"
  elif [ -x "$bin_dir/layerenv" ]; then
    layerenv_bin="$bin_dir/layerenv"
  else
    layerenv_bin="$(command -v layerenv || true)"
  fi
  [ -n "$layerenv_bin" ] || die 1 "pipx installed layerenv but its command was not found; run 'pipx ensurepath'"
else
  tool_home="${LAYERENV_TOOL_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/layerenv-tool}"
  stamp="$tool_home/layerenv-source.txt"
  layerenv_bin="$tool_home/bin/layerenv"
  if [ "$reinstall" -eq 0 ] && [ -x "$layerenv_bin" ] && [ -f "$stamp" ] \
    && [ "$(cat "$stamp")" = "$source_spec" ] && "$layerenv_bin" --version >/dev/null 2>&1; then
    say "layerenv: already installed in $tool_home ($("$layerenv_bin" --version 2>/dev/null || true))"
  else
    if [ ! -x "$tool_home/bin/python" ]; then
      [ -n "$tool_python" ] || die 1 "no python3 found on PATH; install Python 3.10 or newer, or pass --python PATH"
      "$tool_python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
        || die 1 "$tool_python is older than Python 3.10, which layerenv needs; pass --python PATH"
      say "layerenv: creating $tool_home with $tool_python"
      "$tool_python" -m venv "$tool_home" \
        || die 1 "could not create a virtualenv at $tool_home with $tool_python (on Debian/Ubuntu: apt install python3-venv)"
    fi
    say "layerenv: installing $source_spec into $tool_home"
    rm -f "$stamp"
    "$tool_home/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source_spec" \
      || die 1 "pip install $source_spec into $tool_home failed"
    [ -x "$layerenv_bin" ] || die 1 "$layerenv_bin is missing after installing $source_spec"
    printf '%s\n' "$source_spec" >"$stamp"
  fi
  # put it on PATH: $HOME/.local/bin/layerenv -> the venv's command (only a symlink is ever replaced)
  mkdir -p "$bin_dir"
  link="$bin_dir/layerenv"
  if [ -L "$link" ]; then
    if [ "$(readlink "$link")" != "$layerenv_bin" ]; then
      ln -sfn "$layerenv_bin" "$link"
      say "layerenv: linked $link -> $layerenv_bin"
    fi
  elif [ -e "$link" ]; then
    say "note: $link exists and is not a symlink; left as is (this run uses $layerenv_bin)"
  else
    ln -s "$layerenv_bin" "$link"
    say "layerenv: linked $link -> $layerenv_bin"
  fi
fi

case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) say "note: $bin_dir is not on PATH; add it (e.g. export PATH=\"$bin_dir:\$PATH\" in ~/.profile) to run 'layerenv' directly" ;;
esac

# --- 2. the machine's base; 3. the project --------------------------------------------------------
run_layerenv() { # run_layerenv ARGS...: layerenv's exit code passes through (2 bad input, 1 failure)
  status=0
  "$layerenv_bin" "$@" || status=$?
  if [ "$status" -ne 0 ]; then
    [ "$status" -eq 2 ] || status=1
    printf '%s: error: layerenv %s failed (exit %s); see its message above\n' "$prog" "$1" "$status" >&2
    exit "$status"
  fi
}

set -- base
[ -z "$variant" ] || set -- "$@" --variant "$variant"
[ -z "$python_spec" ] || set -- "$@" --python "$python_spec"
run_layerenv "$@"

if [ "$do_project" -eq 0 ]; then
  say "layer a project on it with: layerenv project PATH"
  exit 0
fi

[ -d "$project" ] || die 2 "--project '$project' is not a directory"
project_abs="$(cd "$project" && pwd)"
set -- project "$project_abs"
[ -z "$python_spec" ] || set -- "$@" --python "$python_spec"
if [ -n "$variant" ]; then
  # `layerenv project` has no --variant: the setting keeps it on the base just built
  LAYERENV_VARIANT="$variant"
  export LAYERENV_VARIANT
fi
run_layerenv "$@"

say ""
say "run without activating: cd $project_abs && layerenv run -- python ..."
say "activate with: source $project_abs/.venv/bin/activate"
