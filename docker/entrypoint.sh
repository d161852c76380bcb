#!/usr/bin/env bash
# Container start for the layerenv image: check that the torch base baked into the image fits this
# host's GPUs and driver (`layerenv doctor`), then run the command inside /app's layered venv.
#
# LAYERENV_DOCTOR=strict (default): a problem (doctor exit 1, e.g. base-unfit) is printed and the
#   container exits with doctor's code; warn: printed, then the command runs anyway; off: no check.
set -uo pipefail

mode="${LAYERENV_DOCTOR:-strict}"
case "$mode" in
  strict | warn | off) ;;
  *)
    echo "layerenv: error: LAYERENV_DOCTOR='$mode' must be one of: strict, warn, off" >&2
    exit 2
    ;;
esac

if [ "$mode" != off ]; then
  report="$(layerenv doctor 2>&1)"
  status=$?
  if [ "$status" -ne 0 ]; then
    printf '%s\n' "$report" >&2
    if [ "$mode" = warn ]; then
      echo "layerenv: warning: layerenv doctor exited $status; starting anyway (LAYERENV_DOCTOR=warn)" >&2
    else
      echo "layerenv: error: this image's torch base does not fit this host (layerenv doctor exited $status);" \
        "rebuild with --build-arg TORCH_VARIANT=<variant from 'layerenv detect'>, or set LAYERENV_DOCTOR=warn" >&2
      exit "$status"
    fi
  fi
fi

if [ "$#" -eq 0 ]; then
  set -- python main.py
fi
exec layerenv run -- "$@"
