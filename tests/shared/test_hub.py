"""Models by name (shared/hub.py): local dirs, hub ids from a cache laid out as huggingface_hub writes it.

huggingface_hub reads HF_HOME / HF_HUB_OFFLINE / HF_ENDPOINT once, at import (`huggingface_hub.constants`), so
each case runs `resolve_model` in a fresh interpreter with the environment under test (~0.5 s each).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.tiny_models import build_teacher_and_student
from tests.conftest import ROOT
from tests.counting_hub import refused_url
from tests.hub_cache import make_hub_cache

REPO = "skd-test/tiny-teacher"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return build_teacher_and_student(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def hf_home(models, tmp_path_factory) -> tuple[Path, list[str]]:
    """HF_HOME whose hub cache holds REPO in two commits (refs/main -> the newer)."""
    home = tmp_path_factory.mktemp("hf_home")
    commits = make_hub_cache(models["teacher"], home / "hub", REPO, revisions=2)
    return home, commits


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    return {**env, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def _offline_python(code: str, home: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (huggingface_hub reads its environment at import) with HF_HUB_OFFLINE."""
    env = _env(home, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)  # fmt: skip


def resolve(name: str, env: dict[str, str]) -> tuple[int, str, float]:
    """(exit code, the path or the ValueError's message, seconds) of resolve_model in a fresh process."""
    code = (
        "import sys\nfrom shared.hub import resolve_model\n"
        "try:\n    print(resolve_model(sys.argv[1]))\n"
        "except ValueError as e:\n    print(e)\n    sys.exit(3)\n"
    )
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, name], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout.strip(), time.monotonic() - t


def snapshot_dir(home: Path, commit: str) -> str:
    return str(home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit)


# --- the cache layout itself --------------------------------------------------------------------------------


def test_cache_layout_reads_back_with_huggingface_hub_and_transformers(hf_home):
    home, commits = hf_home
    code = (
        "import json\n"
        "from huggingface_hub import scan_cache_dir, snapshot_download\n"
        "from transformers import AutoConfig, AutoTokenizer\n"
        "info = scan_cache_dir()\n"
        "repo, = info.repos\n"
        f"path = snapshot_download({REPO!r}, local_files_only=True)\n"
        f"old = snapshot_download({REPO!r}, revision={commits[0]!r}, local_files_only=True)\n"
        "print(json.dumps({'warnings': [str(w) for w in info.warnings], 'repo': repo.repo_id,\n"
        "    'refs': {c.commit_hash: sorted(c.refs) for c in repo.revisions}, 'path': path, 'old': old,\n"
        f"    'vocab': AutoConfig.from_pretrained({REPO!r}).vocab_size,\n"
        f"    'tokens': len(AutoTokenizer.from_pretrained({REPO!r}))}}))\n"
    )
    proc = _offline_python(code, home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["warnings"] == [] and out["repo"] == REPO
    assert out["refs"] == {commits[0]: [], commits[1]: ["main"]}
    assert out["path"] == snapshot_dir(home, commits[1]) and out["old"] == snapshot_dir(home, commits[0])
    assert out["vocab"] == 512 and out["tokens"] == 512


# --- resolve_model ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,which", [("", 1), ("@main", 1), ("@new", 1), ("@old", 0)])
def test_resolves_a_cached_hub_id_offline(hf_home, suffix, which):
    home, commits = hf_home
    suffix = {"@new": "@" + commits[1], "@old": "@" + commits[0]}.get(suffix, suffix)
    rc, out, _ = resolve(REPO + suffix, _env(home, HF_HUB_OFFLINE="1"))
    assert rc == 0, out
    assert out == snapshot_dir(home, commits[which])
    assert json.loads((Path(out) / "revision.json").read_text()) == {"revision": which}
    assert (Path(out) / "config.json").is_file() and (Path(out) / "model.safetensors").is_file()


@pytest.mark.parametrize("answer", ["refused", "reset"])
def test_unreachable_hub_falls_back_to_the_cache_without_retries(hf_home, hub, answer):
    """Not offline: the hub's address refuses or drops connections; the cache answers, and the hub was
    tried once per request made (model info, and 2.x's agent registry), not in a retry loop."""
    home, commits = hf_home
    down = hub("reset") if answer == "reset" else None
    env = _env(home, HF_ENDPOINT=down.url if down else refused_url())
    env.pop("HF_HUB_DISABLE_TELEMETRY")  # as users run it: 2.x also fetches an agent registry from the hub
    rc, out, _ = resolve(REPO, env)
    assert rc == 0, out
    assert out == snapshot_dir(home, commits[1])
    rc, out, _ = resolve(f"{REPO}@{commits[0]}", env)
    assert rc == 0 and out == snapshot_dir(home, commits[0]), out
    if down:
        assert 1 <= down.connections <= 4, down.connections  # two resolutions, at most two requests each


def test_silent_hub_falls_back_after_the_etag_timeout(hf_home, hub):
    """A hub address that accepts connections and never answers: snapshot_download alone would wait for
    ever (no timeout on its first call); resolve_model waits HF_HUB_ETAG_TIMEOUT per request, so a longer
    setting waits longer (the difference, not a machine-dependent wall time, is what is checked)."""
    home, commits = hf_home
    waited = {}
    for timeout_s in (1, 3):
        silent = hub("silent")
        env = _env(home, HF_ENDPOINT=silent.url, HF_HUB_ETAG_TIMEOUT=str(timeout_s))
        rc, out, waited[timeout_s] = resolve(REPO, env)  # (resolve's own bound: 120 s, never for ever)
        assert rc == 0, out
        assert out == snapshot_dir(home, commits[1])
        assert 1 <= silent.connections <= 2, silent.connections
    assert waited[3] - waited[1] >= 1.5, waited


@pytest.mark.parametrize("hub_state", ["offline", "refused", "reset"])
def test_missing_hub_id_says_what_was_tried_and_how_to_fix(hf_home, hub, hub_state):
    home, _ = hf_home
    counted = hub("reset")
    endpoint = refused_url() if hub_state == "refused" else counted.url
    extra = {"HF_HUB_OFFLINE": "1"} if hub_state == "offline" else {}
    rc, out, _ = resolve("skd-test/absent@v2", _env(home, HF_ENDPOINT=endpoint, **extra))
    assert rc == 3 and len(out.splitlines()) == 1, out
    assert "'skd-test/absent@v2' is not a local directory and not in the Hugging Face cache" in out
    assert str(home / "hub") in out
    # a connection closed at once reads as either, by when the close lands: a FIN before the request was
    # read (RemoteProtocolError) or an RST for its unread bytes (ReadError, "Connection reset by peer")
    reason = {"offline": r"HF_HUB_OFFLINE is set", "refused": r"is not reachable \(ConnectError",
              "reset": r"is not reachable \((RemoteProtocolError|ReadError)"}[hub_state]  # fmt: skip
    assert re.search(reason, out), out
    assert "hf download skd-test/absent --revision v2" in out and "HF_HOME" in out
    # offline: not one connection; reachable but down: one request, no retry loop
    assert counted.connections == {"offline": 0, "refused": 0, "reset": 1}[hub_state], counted.connections


@pytest.mark.parametrize(
    "name", ["", "a/b/c", "just-a-name", "org/na me", "org/name@", "org--x/name", "./nowhere/x"]
)
def test_malformed_names_say_which_forms_are_accepted(hf_home, name):
    home, _ = hf_home
    rc, out, _ = resolve(name, _env(home, HF_HUB_OFFLINE="1"))
    assert rc == 3 and len(out.splitlines()) == 1, out
    assert "local model directory" in out and "'org/name'" in out and "@revision" in out


def test_local_paths_pass_through(models):
    from shared.hub import resolve_model

    assert resolve_model(str(models["teacher"])) == models["teacher"]
    with pytest.raises(ValueError, match="is a file, not a model directory"):
        resolve_model(str(models["teacher"] / "config.json"))


def test_incomplete_listing_with_a_config_still_resolves(models, tmp_path):
    """Another tool downloaded a subset of the repo (the tree listing names a file not on disk)."""
    commits = make_hub_cache(models["teacher"], tmp_path / "hub", REPO)
    listing = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}" / "trees" / f"{commits[0]}.json"
    data = json.loads(listing.read_text())
    data["files"]["merges.txt"] = {"size": 10, "blob_id": "0" * 40}
    listing.write_text(json.dumps(data))
    rc, out, _ = resolve(REPO, _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert rc == 0 and out.endswith(commits[0]), out


# --- the rollout server's --model ---------------------------------------------------------------------------


def _server(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rollout_server", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_server_resolves_a_hub_id_and_keeps_its_name(hf_home):
    """In process: the config the engine gets names the snapshot; clients see the name given."""
    home, commits = hf_home
    code = (
        "from rollout_server.config import ServerConfig\n"
        "from rollout_server.engine import check_config, resolve_model_option\n"
        f"c = resolve_model_option(ServerConfig(model={REPO + '@main'!r}))\n"
        "check_config(c)\n"
        "print(c.model)\nprint(c.served_model_name)\n"
        "print(resolve_model_option(c) is c)\n"
    )
    proc = _offline_python(code, home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [snapshot_dir(home, commits[1]), REPO + "@main", "True"]


def test_server_start_up_accepts_a_cached_hub_id_and_rejects_a_missing_one(hf_home):
    home, _ = hf_home
    env = _env(home, HF_HUB_OFFLINE="1")
    # accepted: resolution and the config check pass, up to a check that needs the model's config (vocab 512)
    proc = _server(["--model", REPO, "--max-logprobs", "600"], env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "--max-logprobs 600 exceeds the vocabulary size 512" in lines[0]
    # rejected: one line, exit 2, through _fail
    proc = _server(["--model", "skd-test/absent"], env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith(
        "rollout_server: error: --model: model 'skd-test/absent' is not a local directory"
    )
    assert "hf download skd-test/absent" in lines[0]
