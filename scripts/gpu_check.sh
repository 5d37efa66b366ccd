#!/usr/bin/env bash
# The learner's GPU path, checked in one go (issue 28; benchmarks/gpu_check.py says what each step checks).
#
#   bash scripts/gpu_check.sh                        # on a GPU machine with torch, transformers and peft
#   SKD_GPU_CHECK_CPU=1 bash scripts/gpu_check.sh    # the dry run: every step on this CPU, a tiny student
#   bash scripts/gpu_check.sh --wheels               # here: download the pure-Python dependencies a bare
#                                                    # GPU image lacks (pydantic, ...) into .whl/ (Python 3.12)
#
# A machine without the project's venv and without pydantic installs them from .whl/ (no index needed).
# Prints a table (step, what, measured, expected, result); exits 1 if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 annotated-types==0.8.0
        typing-inspection==0.4.5 python-dotenv==1.2.4)

if [ "${1:-}" = "--wheels" ]; then
  mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  ls .whl
  exit 0
fi

if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi
if ! "$PY" -c "import pydantic, pydantic_settings" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check: needs pydantic and pydantic-settings: pip install them, or run 'bash scripts/gpu_check.sh --wheels' where an index is reachable and bring .whl/" >&2
    exit 1
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/skd-gpu-check-site .whl/*.whl
  export PYTHONPATH="/tmp/skd-gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
fi

args=()
if [ "${SKD_GPU_CHECK_CPU:-0}" = "1" ]; then args+=(--cpu); fi
export PYTHONUNBUFFERED=1 TORCH_NCCL_ASYNC_ERROR_HANDLING=3  # a failed NCCL call raises, nothing hangs
exec timeout 600 "$PY" -m benchmarks.gpu_check "${args[@]}" "$@"
