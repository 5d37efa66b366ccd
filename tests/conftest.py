"""Session fixtures: tiny models built here, one real teacher server (and one with an API key), and
the same teacher loaded in transformers fp32 as the dense reference."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from devtools.tiny_models import build_teacher_and_student

ROOT = Path(__file__).resolve().parents[1]
MAX_MODEL_LEN = 256
API_KEY = "test-key-123"

# Engines started for one test run eager (no torch.compile): ~2 s instead of 9-40 s each, same outputs.
# The shared teacher server below and the compose stack (tests/deploy/test_deploy.py) run compiled, as
# users run them. RunConfig reads SKD_ENFORCE_EAGER (student engines, a self-started teacher), also in
# job subprocesses.
os.environ.setdefault("SKD_ENFORCE_EAGER", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else Ray may turn token auth on (../shared/PLATFORM.md)
# Every vLLM engine started by this run (in this process, servers, jobs, Ray actors) appends a line here;
# the summary at the end counts them: start-ups are most of the suite's time.
os.environ.setdefault("SKD_ENGINE_LOG", str(Path(tempfile.mkdtemp(prefix="skd-engines-")) / "starts.log"))


# Tests that use these start Ray or a server of their own: end to end (`-m "not e2e"` skips them), as are
# those marked `e2e` where they are defined (whole jobs as subprocesses).
E2E_FIXTURES = {"ray_cluster", "second_server", "compose_stack"}


def pytest_collection_modifyitems(items):
    for item in items:
        if E2E_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)
        if "compose_stack" in item.fixturenames:  # one worker starts the (module-scoped) stack once
            item.add_marker(pytest.mark.xdist_group("compose_stack"))


def pytest_terminal_summary(terminalreporter):
    log = Path(os.environ["SKD_ENGINE_LOG"])
    lines = log.read_text().splitlines() if log.exists() else []
    kinds = collections.Counter(" ".join(line.split()[:2]) for line in lines)
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    terminalreporter.write_line(f"vLLM engine start-ups this run: {len(lines)} ({detail or 'none'})")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A teacher and a student sharing one tokenizer (vocab 512)."""
    return build_teacher_and_student(tmp_path_factory.mktemp("models"))


def _free_port() -> int:
    """A free port between Ray's worker ports (10002-19999) and the kernel's ephemeral range (32768+ here).

    A server binds its port only after loading its engine, a minute later: a port from the ephemeral range
    (what binding port 0 gives) can be taken meanwhile by a connection or a Ray process (seen: the compose
    stack's teacher lost its port to the Ray head started beside it)."""
    lo = 32768
    with contextlib.suppress(OSError, ValueError):
        lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()  # seeded from the OS: the test workers pick apart
    for _ in range(200):
        port = rng.randrange(20000, max(lo, 20001))
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the range is full: fall back to an ephemeral port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `python -m rollout_server` subprocess, on a port the kernel picks when it binds (`--port 0
    --port-file`): no port is chosen beforehand and taken by another process meanwhile."""

    def __init__(self, model: Path, log: Path, *extra: str, eager: bool = True):
        self.log = log
        self.port_file = log.with_name(log.name + ".port")
        self.port_file.unlink(missing_ok=True)
        self.port, self.url = 0, ""
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0-1")}
        cmd = [
            sys.executable,
            "-m",
            "rollout_server",
            "--model",
            str(model),
            "--port-file",
            str(self.port_file),
        ]
        cmd += ["--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN), "--kv-cache-gib", "0.25", *extra]
        cmd += ["--enforce-eager"] if eager else []
        self._start = lambda port: subprocess.Popen(
            [*cmd, "--port", str(port)], stdout=log.open("a"), stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        self.proc = self._start(0)

    def restart(self) -> None:
        """Start it again on the same port (after a kill: its clients know that address); `wait_ready`
        waits for it."""
        self.proc = self._start(self.port)

    def wait_listening(self, timeout_s: float = 300.0) -> None:
        """Until the server listens (its engine is loaded): its port and URL are known from then on."""
        deadline = time.monotonic() + timeout_s
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"server not listening after {timeout_s}s:\n{self.log.read_text()[-4000:]}"
                )
            time.sleep(0.2)
        self.port = int(self.port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        from shared.client import TeacherUnavailable, wait_until_healthy

        if not self.port:
            self.wait_listening(timeout_s)
        try:
            wait_until_healthy(self.url, self.proc, timeout_s)
        except TeacherUnavailable as e:
            raise RuntimeError(f"{e}:\n{self.log.read_text()[-4000:]}") from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def teacher_server(tiny_models, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "teacher.log"
    limits = ["--max-items-per-request", "4000", "--max-tokens-per-request", "200000"]
    with Server(tiny_models["teacher"], log, *limits, eager=False) as srv:  # compiled, as users run it
        yield srv


@pytest.fixture(scope="session")
def second_server(tiny_models, tmp_path_factory):
    """A second server for the tests that need another one: another model (the student's weights, same
    vocabulary), an API key, and tight admission and body limits."""
    log = tmp_path_factory.mktemp("logs") / "second.log"
    limits = ["--max-queued-requests", "2", "--max-body-mb", "32", "--max-items-per-request", "1024"]
    with Server(tiny_models["student"], log, "--api-key", API_KEY, *limits) as srv:
        yield srv


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole run (jobs run in-process with `main()` join it)."""
    import ray

    ray.init(address="local", include_dashboard=False, num_cpus=4, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def http(teacher_server):
    with httpx.Client(base_url=teacher_server.url, timeout=600) as client:
        yield client


@pytest.fixture(scope="session")
def hf_teacher(tiny_models):
    from tests.reference import DenseTeacher

    return DenseTeacher(tiny_models["teacher"])


@pytest.fixture
def hub():
    """`hub("reset" or "silent")`: a hub address counting connections made to it (tests/counting_hub.py)."""
    from tests.counting_hub import Hub

    made: list[Hub] = []

    def make(answer: str) -> Hub:
        made.append(Hub(answer))
        return made[-1]

    yield make
    for h in made:
        h.close()
