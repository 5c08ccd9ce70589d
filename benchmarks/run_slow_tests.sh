#!/usr/bin/env bash
# The tests marked `slow` (two training processes under torchrun, the MNIST distillation figure), which the default run leaves out to stay
# inside its 10-minute budget; with a GPU and TensorRT, or an attached board, add -m gpu / -m board.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
exec python -m pytest -m slow "$@"
