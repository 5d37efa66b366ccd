"""push_to_hub (trainer/outputs/hub.py): fast, clear failures before a run; the model card; a real upload to a
local stand-in for the few hub endpoints used (whoami, repo info, create repo, preupload, commit).

The failure cases run in a fresh interpreter, because huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT
at import; the fake-hub cases run in process with `huggingface_hub.constants.ENDPOINT` patched (HfApi reads
it per instance).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.counting_hub import refused_url

REPO = "skd-org/tiny-student"
TOKEN = "hf_test_write_token"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    return {**env, "HF_HOME": "/nonexistent-hf-home", **extra}


def _check_in_subprocess(env: dict[str, str]) -> tuple[int, str]:
    code = (
        "import sys\nfrom trainer.outputs.hub import check_hub_access\n"
        f"try:\n    check_hub_access({REPO!r}, None)\n"
        "except RuntimeError as e:\n    print(e)\n    sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout.strip()


# --- check_hub_access: failures, fast -----------------------------------------------------------------------


def test_offline_fails_fast_and_says_so(hub):
    counted = hub("reset")
    rc, out = _check_in_subprocess(_env(HF_HUB_OFFLINE="1", HF_TOKEN=TOKEN, HF_ENDPOINT=counted.url))
    assert rc == 3 and "HF_HUB_OFFLINE is set" in out and "push_to_hub" in out, out
    assert counted.connections == 0  # decided before any network call


@pytest.mark.parametrize("answer", ["refused", "reset"])
def test_unreachable_hub_fails_fast_and_says_so(hub, answer):
    counted = hub("reset")
    url = counted.url if answer == "reset" else refused_url()
    rc, out = _check_in_subprocess(_env(HF_ENDPOINT=url, HF_TOKEN=TOKEN))
    error = "ConnectError" if answer == "refused" else "RemoteProtocolError"
    assert rc == 3 and f"the hub {url} is not reachable ({error}" in out, out
    assert counted.connections <= 2  # the probe (and 2.x's agent registry): no retry loop


def test_silent_hub_fails_within_the_timeout(hub):
    """Connections open, nothing answers: the probe's timeout ends it (the subprocess's own 60 s bound
    catches a wait for ever), after one try."""
    silent = hub("silent")
    rc, out = _check_in_subprocess(_env(HF_ENDPOINT=silent.url, HF_TOKEN=TOKEN))
    assert rc == 3 and "is not reachable (ReadTimeout" in out, out
    assert 1 <= silent.connections <= 2, silent.connections


def test_no_token_says_how_to_log_in(hub):
    counted = hub("reset")
    rc, out = _check_in_subprocess(_env(HF_ENDPOINT=counted.url))
    assert rc == 3 and "no Hugging Face token" in out and "HF_TOKEN" in out and "hf auth login" in out, out
    assert counted.connections == 0


def test_malformed_repo_id():
    from trainer.outputs.hub import check_hub_access

    with pytest.raises(RuntimeError, match="hub_model_id 'a/b/c' is not a repo id"):
        check_hub_access("a/b/c", TOKEN)


# --- model_card ---------------------------------------------------------------------------------------------


def test_model_card_front_matter_and_body(tmp_path):
    from huggingface_hub import ModelCard

    from trainer.outputs.hub import model_card

    config = {
        "method": "skd",
        "top_k": 25,
        "lr": 5e-5,
        "steps": 30,
        "lora_rank": 8,
        "teacher_api_key": "secret",
    }
    metrics = {"eval/accept_rate": 0.7125, "eval/reward": 0.25}
    text = model_card(REPO, "HuggingFaceTB/SmolLM2-135M@main", "org/teacher-1.7B", "skd", metrics, config)
    (tmp_path / "README.md").write_text(text)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M"  # a hub id, revision dropped
    assert card.data.tags == ["skd", "knowledge-distillation"]
    assert "| eval/accept_rate | 0.7125 |" in card.text and "| eval/reward | 0.25 |" in card.text
    assert (
        "`org/teacher-1.7B`" in card.text and "| top_k | 25 |" in card.text and "| lr | 5e-05 |" in card.text
    )
    assert (
        f'AutoModelForCausalLM.from_pretrained("{REPO}")' in card.text and 'subfolder="adapter"' in card.text
    )
    assert "secret" not in text


def test_model_card_leaves_a_local_base_model_out_of_the_metadata(tmp_path):
    """The hub refuses a README whose base_model is not a hub id."""
    from huggingface_hub import ModelCard

    from trainer.outputs.hub import model_card

    text = model_card(REPO, str(tmp_path), "org/teacher", "mixed", {"eval/x": 1.0}, {})
    card = ModelCard(text)
    assert card.data.base_model is None and f"`{tmp_path}`" in card.text


# --- a local stand-in for the hub ---------------------------------------------------------------------------


class FakeHub(ThreadingHTTPServer):
    """whoami-v2, repo info (404 until created), repos/create, preupload (everything 'regular': inline
    base64 in the commit, so no LFS/Xet transfer), validate-yaml, commit. Records what was committed."""

    daemon_threads = True

    def __init__(self, role: str = "write", orgs: tuple[str, ...] = ("skd-org",)):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.role, self.orgs = role, orgs
        self.repos: dict[str, dict] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.validated: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        hub, path = self.server, self.path.split("?")[0]
        hub.requests.append(f"GET {path}")
        if path == "/api/whoami-v2":
            if self.headers.get("authorization") != f"Bearer {TOKEN}":
                return self._reply(401, {"error": "Invalid credentials in Authorization header"})
            orgs = [{"name": o} for o in hub.orgs]
            return self._reply(200, {"name": "me", "orgs": orgs, "auth": {"accessToken": {"role": hub.role}}})
        repo = path.removeprefix("/api/models/")
        if path.startswith("/api/models/") and repo in hub.repos:
            return self._reply(200, {"id": repo, "sha": "0" * 40, "private": hub.repos[repo]["private"]})
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        hub, path = self.server, self.path.split("?")[0]
        hub.requests.append(f"POST {path}")
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("authorization") != f"Bearer {TOKEN}":
            return self._reply(401, {"error": "Invalid credentials"})
        if path == "/api/repos/create":
            req = json.loads(body)
            repo = f"{req['organization'] or 'me'}/{req['name']}"
            if repo in hub.repos:
                return self._reply(
                    409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo}"}
                )
            hub.repos[repo] = {"private": req.get("visibility") == "private"}
            return self._reply(200, {"url": f"{hub.url}/{repo}"})
        if path == "/api/validate-yaml":  # upload_folder has the hub check a README's metadata
            hub.validated.append(json.loads(body)["content"])
            return self._reply(200, {})
        if path.endswith("/preupload/main"):
            files = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                for f in json.loads(body)["files"]
            ]
            return self._reply(200, {"files": files})
        if path.endswith("/commit/main"):
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            repo = path.removeprefix("/api/models/").removesuffix("/commit/main")
            return self._reply(
                200, {"commitUrl": f"{hub.url}/{repo}/commit/{'1' * 40}", "commitOid": "1" * 40}
            )
        self._reply(404)


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants

    hubs: list[FakeHub] = []

    def start(**kw) -> FakeHub:
        hub = FakeHub(**kw)
        threading.Thread(target=hub.serve_forever, daemon=True).start()
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        hubs.append(hub)
        return hub

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield start
    for hub in hubs:
        hub.shutdown()
        hub.server_close()


def test_check_hub_access_passes_with_a_write_token(fake_hub):
    from trainer.outputs.hub import check_hub_access

    hub = fake_hub()
    check_hub_access(REPO, TOKEN)
    assert hub.requests == [f"GET /api/models/{REPO}", "GET /api/whoami-v2"]


@pytest.mark.parametrize(
    "hub_kw,token,needle",
    [
        ({}, "hf_wrong", "the hub refused the token"),
        ({"role": "read"}, TOKEN, "the token of me is read-only"),
        ({"orgs": ("other",)}, TOKEN, "cannot write to 'skd-org' (theirs: me, other)"),
    ],
)
def test_check_hub_access_refuses_tokens_that_cannot_push(fake_hub, hub_kw, token, needle):
    from trainer.outputs.hub import check_hub_access

    fake_hub(**hub_kw)
    with pytest.raises(RuntimeError, match="push_to_hub") as e:
        check_hub_access(REPO, token)
    assert needle in str(e.value)


def _checkpoint(root: Path) -> Path:
    """What trainer/learner/local.py `save` writes for a LoRA run (contents are stand-ins)."""
    from trainer.learner.model import ADAPTER_DIR
    from trainer.outputs.checkpoints import STATE_FILE

    ckpt = root / "checkpoints" / "step_000030"
    (ckpt / ADAPTER_DIR).mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        (ckpt / name).write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"\0" * 64)
    (ckpt / ADAPTER_DIR / "adapter_config.json").write_text("{}")
    (ckpt / ADAPTER_DIR / "adapter_model.safetensors").write_bytes(b"\1" * 32)
    (ckpt / STATE_FILE).write_bytes(b"optimizer state")
    return ckpt


def test_push_checkpoint_uploads_the_model_not_the_training_state(fake_hub, tmp_path):
    from trainer.outputs.hub import model_card, push_checkpoint

    hub = fake_hub()
    ckpt = _checkpoint(tmp_path)
    card = model_card(REPO, "org/base", "org/teacher", "skd", {"eval/x": 0.5}, {"lora_rank": 8})
    url = push_checkpoint(ckpt, REPO, TOKEN, card, private=True)
    assert url == f"{hub.url}/{REPO}"
    assert hub.repos == {REPO: {"private": True}}
    assert sorted(hub.files) == [
        "README.md",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert hub.files["README.md"].decode() == card == (ckpt / "README.md").read_text() == hub.validated[0]
    # again into the existing repo (create_repo exist_ok)
    assert push_checkpoint(ckpt, REPO, TOKEN, card) == f"{hub.url}/{REPO}"


def test_push_checkpoint_failures_are_runtime_errors_with_the_cause(fake_hub, tmp_path):
    from trainer.outputs.hub import push_checkpoint

    fake_hub()
    ckpt = _checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match=f"uploading {ckpt} to {REPO} failed: .*401"):
        push_checkpoint(ckpt, REPO, "hf_wrong", "card")
    with pytest.raises(RuntimeError, match="not a model checkpoint"):
        push_checkpoint(tmp_path, REPO, TOKEN, "card")
