"""Models by name: a local directory, or a Hugging Face hub id `org/name[@revision]` (the hub or its cache).

`resolve_model` turns what a user passes as a model into a local directory that vLLM and transformers load
without touching the network again. Hub ids go through `huggingface_hub.snapshot_download`, so the library's
own environment applies: HF_HOME / HF_HUB_CACHE (where the cache is), HF_HUB_OFFLINE (cache only), HF_TOKEN
(private and gated repos), HF_ENDPOINT (a mirror), HF_HUB_ETAG_TIMEOUT (seconds to wait for the hub).

Only what a model needs is downloaded (`MODEL_PATTERNS`: configs, safetensors weights, tokenizer and chat
template files); PyTorch `.bin` weights only for a repo without safetensors (`BIN_PATTERNS`), and never
TF/Flax/ONNX/GGUF files or `*.py` remote code. A hub that cannot be reached falls back to the local cache, as
snapshot_download does; that fallback is bounded by HF_HUB_ETAG_TIMEOUT because the library's own hub calls
have no timeout (a hub whose address swallows packets would otherwise hang for minutes).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from shared.errors import first_line

logger = logging.getLogger(__name__)

# Configs (config.json, generation_config.json, tokenizer_config.json, *.safetensors.index.json, vocab.json),
# weights, sentencepiece/tiktoken vocabularies, BPE merges / WordPiece vocab.txt, chat templates.
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja", "tokenizer*"]
# Weights of repos that ship no safetensors (fetched only then).
BIN_PATTERNS = ["pytorch_model*.bin"]

FORMS = (
    "a local model directory, or a Hugging Face hub id 'org/name' with an optional '@revision' "
    "(branch, tag or commit sha), e.g. 'HuggingFaceTB/SmolLM2-135M-Instruct@main'"
)
_HUB_ID = re.compile(r"(?P<repo>[^/@\s]+/[^/@\s]+)(?:@(?P<rev>[^@\s]+))?")


def parse_hub_id(name: str) -> tuple[str, str | None]:
    """('org/name', revision or None) for 'org/name[@revision]'; ValueError naming the accepted forms."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    m = _HUB_ID.fullmatch(name)
    if m is None or name.startswith((".", "~")):
        raise ValueError(f"model {name!r} is neither a directory nor a hub id; expected {FORMS}")
    try:
        validate_repo_id(m["repo"])
    except HFValidationError as e:
        raise ValueError(f"model {name!r}: {e} Expected {FORMS}") from None
    return m["repo"], m["rev"]


def resolve_model(name: str) -> Path:
    """A local directory holding model `name`: the directory itself, or the hub snapshot (downloaded if the
    hub is reachable, else from the local cache). ValueError (one line) saying what was tried, how to fix."""
    if not name or not name.strip():
        raise ValueError(f"model name is empty; expected {FORMS}")
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"model {name!r} is a file, not a model directory; expected {FORMS}")
    repo_id, revision = parse_hub_id(name)  # a missing local path with one '/' is taken for a hub id
    snapshot = Path(_snapshot(name, repo_id, revision, MODEL_PATTERNS))
    if not any(snapshot.rglob("*.safetensors")):
        snapshot = Path(_snapshot(name, repo_id, revision, MODEL_PATTERNS + BIN_PATTERNS))
    return snapshot


def _unreachable(repo_id: str, revision: str | None) -> Exception | None:
    """Why the hub cannot be reached (the exception), or None if it answers within HF_HUB_ETAG_TIMEOUT.

    snapshot_download's own first call has no timeout; this probe has one, so an unreachable hub costs at
    most HF_HUB_ETAG_TIMEOUT seconds before the cache is used."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().repo_info(repo_id, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError as e:  # the hub answered (not found, gated, 5xx): snapshot_download decides
        logger.debug("hub probe for %s: %s", repo_id, e)
        return None
    except Exception as e:  # connection refused, DNS, timeout, proxy: the network, not the repo
        return e
    return None


def _snapshot(name: str, repo_id: str, revision: str | None, patterns: list[str]) -> str:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        from huggingface_hub.errors import IncompleteSnapshotError
    except ImportError:  # huggingface_hub < 1.x: no tree listing, no completeness check
        IncompleteSnapshotError = type("IncompleteSnapshotError", (Exception,), {})

    offline = constants.HF_HUB_OFFLINE
    why = None if offline else _unreachable(repo_id, revision)
    if offline:
        state = "the hub is offline (HF_HUB_OFFLINE is set)"
    elif why is not None:
        state = f"the hub {constants.ENDPOINT} is not reachable ({type(why).__name__}: {first_line(why)})"
    else:
        state = f"the hub {constants.ENDPOINT} answered"
    fix = (
        f"pass a local model directory, or run `hf download {repo_id}"
        + (f" --revision {revision}" if revision else "")
        + "` where the hub is reachable and point HF_HOME (or HF_HUB_CACHE) here at that cache"
    )
    try:
        return snapshot_download(
            repo_id, revision=revision, allow_patterns=patterns, local_files_only=why is not None
        )
    except IncompleteSnapshotError as e:
        # The cache's tree listing names files matching `patterns` that are not on disk (another tool
        # downloaded a subset, e.g. without *.txt). A snapshot with a config is still a model: use it.
        snapshot = getattr(e, "snapshot_path", None)
        if snapshot and (Path(snapshot) / "config.json").is_file():
            logger.warning("%s: using the cached snapshot although %s", name, first_line(e))
            return snapshot
        raise ValueError(f"model {name!r}: {first_line(e)}; {fix}") from None
    except LocalEntryNotFoundError:
        raise ValueError(
            f"model {name!r} is not a local directory and not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE}, and {state}; {fix}"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(f"model {name!r}: the hub has no revision {revision!r} of {repo_id}") from None
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise ValueError(
            f"model {name!r} is not a local directory, and the hub {constants.ENDPOINT} refused {repo_id} "
            f"({type(e).__name__}: it does not exist, or it is private/gated and needs a token with access: "
            "set HF_TOKEN or run `hf auth login`)"
        ) from None
    except Exception as e:  # a 5xx, a download cut half-way (httpx errors), a full disk
        raise ValueError(f"model {name!r}: downloading {repo_id} failed ({first_line(e)})") from None
