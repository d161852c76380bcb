#!/usr/bin/env bash
# A Slurm batch script for a project on storage shared by every node, whatever GPUs they have.
#
#   sbatch --nodes=2 --gpus-per-node=1 docs/clusters/slurm-job.sh /shared/projects/app train.py --epochs 3
#
# Needs on every node: layerenv on PATH and the same Python (an identical image or a shared install),
# the store and the project at the same paths. Each GPU kind's base is built once for the whole
# cluster, by whichever node of that kind takes the store's lock first; the others reuse it.
#SBATCH --job-name=layerenv-train
#SBATCH --ntasks-per-node=1
set -euo pipefail

export LAYERENV_HOME="${LAYERENV_HOME:-/shared/layerenv}"  # on shared storage: see "Clusters" in the README
project="${1:?usage: slurm-job.sh PROJECT_DIR SCRIPT [ARGS...]}"
shift

# 1. On the first node: create (or update) the project's venv, choosing its base per node at start-up.
layerenv project --per-node "$project"

# 2. On every node, once: detect that node, build or reuse its base, record the node's answer.
srun --ntasks-per-node=1 layerenv base --quiet

# 3. The job: every task's Python loads the torch build its own node needs.
cd "$project"
srun layerenv run -- python "$@"
