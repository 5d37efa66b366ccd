"""The README's curl examples (*By hand, with curl*), run as written against a real server with an API key:
only the address, the key and the model dir are the test's (its server serves the tiny student)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.conftest import API_KEY, ROOT


def _readme_commands() -> list[str]:
    """The bash block under the README's *By hand, with curl*, one command per entry (continuations joined,
    the server start and comments left out)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### By hand, with curl\n.*?```bash\n(.*?)```", text, re.S)[1]
    joined = block.replace("\\\n", " ")
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [c for c in commands if c and "rollout_server" not in c]


def _run(command: str, server, model) -> subprocess.CompletedProcess:
    port = server.url.rsplit(":", 1)[1]
    command = command.replace("localhost:8000", f"127.0.0.1:{port}").replace(
        "127.0.0.1:8000", f"127.0.0.1:{port}"
    )
    command = command.replace("Bearer secret", f"Bearer {API_KEY}").replace(" secret", f" {API_KEY}")
    command = command.replace("~/.cache/skd/SmolLM2-135M-Instruct", str(model))
    env = {**os.environ, "PYTHON": sys.executable}  # the script's interpreter: this one (a clone's .venv)
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_the_readme_curl_examples_run_as_written(second_server, tiny_models):
    commands = _readme_commands()
    assert [c.split()[0] for c in commands] == ["curl"] * 4 + ["scripts/verify_example.sh"], commands
    health, info, score, generate, verify = (_run(c, second_server, tiny_models["student"]) for c in commands)
    for done in (health, info, score, generate, verify):
        assert done.returncode == 0, done.stderr
    assert json.loads(health.stdout) == {"status": "ok"}
    assert json.loads(info.stdout)["vocab_size"] == 512
    (scored,) = json.loads(score.stdout)["items"]
    assert len(scored["teacher_topk_ids"]) == 3 and all(len(row) == 2 for row in scored["teacher_topk_ids"])
    (generated,) = json.loads(generate.stdout)["items"]
    assert 1 <= len(generated["token_ids"]) <= 4
    assert re.search(r"^kept \d+ draft tokens: ", verify.stdout, re.M), verify.stdout
    assert "teacher's top 3 at each committed position:" in verify.stdout


def test_without_the_key_the_readme_curl_is_refused(second_server, tiny_models):
    info = next(c for c in _readme_commands() if "/info" in c)
    done = _run(info.replace(" -H 'Authorization: Bearer secret'", ""), second_server, tiny_models["student"])
    assert json.loads(done.stdout) == {"detail": "missing or invalid API key"}
