#!/usr/bin/env bash
# Installs whatever is missing into ./.venv, then runs the command given, if any, inside it:
#   bash tools/bootstrap.sh python tools/train_net.py --config-file ...
# Idempotent: a second run installs nothing and starts in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
# (re)made where absent, or left without pip by a failed earlier try (no python3-venv package)
if [ ! -x "$PY" ] || ! "$PY" -m pip --version >/dev/null 2>&1; then
  python3 -m venv --clear .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Every release pinned (tools/constraints.txt): a new release cannot move the README's figures.
export PIP_CONSTRAINT="$PWD/tools/constraints.txt"
# torch/torchvision first: detectron2's installer and everything else builds on them.
"$PY" -m pip install --quiet torch torchvision
"$PY" tools/install_detectron2.py
# Re-install da-detect (and its dependencies) only when setup.py or the pins changed.
stamp=.venv/.da-detect-setup.sha256
setup=$(sha256sum setup.py tools/constraints.txt)
if [ "$(cat "$stamp" 2>/dev/null)" != "$setup" ]; then
  "$PY" -m pip install --quiet -e ".[test]"
  echo "$setup" > "$stamp"
fi

if [ $# -gt 0 ]; then
  cmd=$1; shift
  if [ -x ".venv/bin/$cmd" ]; then cmd=".venv/bin/$cmd"; fi
  exec "$cmd" "$@"
fi
