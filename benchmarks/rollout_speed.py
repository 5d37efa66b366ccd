"""Rollout speed of the whole system (teacher server + Ray student actors) under the settings that shape it,
each measured side by side in one run on the embedded default models (SmolLM2-135M teacher).

    python -m benchmarks.rollout_speed --only overlap     # overlap_groups 1 vs 2
    python -m benchmarks.rollout_speed --only gamma       # fixed gamma=5 vs adaptive_gamma
    python -m benchmarks.rollout_speed --only scaling     # actors 1, 2 x sequences in flight 4 .. 64
    python -m benchmarks.rollout_speed --only block       # teacher KV block size 32 / 64 / 128 (P1)
    python -m benchmarks.rollout_speed --student DIR      # a trained student (acceptance matters)

Per setting: committed tokens/s over `--seconds` after a warm-up (actors' counters; the shared teacher is
warmed by a discarded first measurement, and the settings are measured `--repeats` times interleaved), the
draft acceptance, and from the teacher server's /metrics the teacher tokens computed per committed token
(P1) beside its floor: (draft tokens + one position per verified item) / committed, i.e. what a teacher
that recomputed nothing already seen would compute. A fresh teacher server per block size;
one for everything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
from prometheus_client.parser import text_string_to_metric_families

from shared import reaper
from shared.client import TeacherEndpoint
from trainer.config import RunConfig
from trainer.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
COUNTERS = ("skd_teacher_tokens_computed", "skd_tokens_committed", "skd_draft_tokens", "skd_items")

EXPERIMENTS = {
    "overlap": {"1 group": {}, "2 groups": {"overlap_groups": 2}},
    "gamma": {"fixed gamma=5": {"adaptive_gamma": False}, "adaptive gamma (1..16)": {"adaptive_gamma": True}},
    "scaling": {
        f"{a} actor{'s' * (a > 1)} x {n} in flight": {"num_rollout_actors": a, "max_inflight_per_actor": n}
        for a in (1, 2)
        for n in (4, 8, 16, 32, 64)
    },
    "block": {f"block {b}": {"teacher_block_size": b} for b in (32, 64, 128)},
}


def server_counters(url: str) -> dict[str, float]:
    """The teacher server's counters (verify items only for skd_items)."""
    out = dict.fromkeys(COUNTERS, 0.0)
    with TeacherEndpoint(url) as teacher:
        exposition = teacher.metrics()
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            name = s.name.removesuffix("_total")
            if name in out and (name != "skd_items" or s.labels.get("route") == "/verify"):
                out[name] += s.value
    return out


def measure(cfg: RunConfig, student: str, urls: list[str], eos: list[int], seconds: float) -> dict:
    """Committed tokens/s of a rollout group with these settings, timed from when every actor has committed
    tokens plus seconds / 3 (engine start-up and first compilations are not counted)."""
    from ray.util.queue import Queue
    from transformers import AutoTokenizer

    from trainer.data.prompts import load_prompts
    from trainer.rollout.group import RolloutGroup

    prompts, _, _ = load_prompts(cfg, AutoTokenizer.from_pretrained(student))
    prompt_q, sample_q = Queue(), Queue()
    prompt_q.put_nowait_batch(prompts * 4)  # never runs dry within the measurement
    group = RolloutGroup(cfg, student, urls, eos, METHODS[cfg.method](cfg), (prompt_q, sample_q))
    ray.get([w.get_stats.remote() for w in group.actors])  # engines built (actors' __init__) before any clock
    group.start()

    def totals() -> dict[str, float]:
        stats = ray.get([w.get_stats.remote() for w in group.actors])
        return {k: sum(s[k] for s in stats) for k in ("tokens", "drafted", "accepted")} | server_counters(
            urls[0]
        )

    while min(s["tokens"] for s in ray.get([w.get_stats.remote() for w in group.actors])) == 0:
        time.sleep(0.5)  # every actor through its first rounds: kernels compiled
    time.sleep(seconds / 3)  # batches full
    before, t0 = totals(), time.perf_counter()
    time.sleep(seconds)
    after, t1 = totals(), time.perf_counter()
    group.stop()
    d = {k: after[k] - before[k] for k in after}
    committed = max(d["skd_tokens_committed"], 1.0)
    return {
        "committed_tokens_per_s": d["tokens"] / (t1 - t0),
        "draft_acceptance": d["accepted"] / max(d["drafted"], 1),
        "teacher_tokens_per_committed": d["skd_teacher_tokens_computed"] / committed,
        "floor_per_committed": (d["skd_draft_tokens"] + d["skd_items"]) / committed,
        "committed_per_round": committed / max(d["skd_items"], 1),
    }


@contextlib.contextmanager
def teacher(cfg: RunConfig, teacher_dir: Path):
    from trainer.teacher.service import teacher_service

    with teacher_service(cfg, teacher_dir, Path(tempfile.mkdtemp()) / "teacher.log") as (urls, info):
        yield urls, info.eos_token_ids


def run_experiment(name: str, args: argparse.Namespace, base: dict, shared, teacher_dir: Path) -> list[dict]:
    """Every setting of one experiment, `--repeats` times interleaved (A B A B ...) so drift shows up as a
    difference between repeats rather than between settings; one row per setting and repeat. `shared` is
    the teacher server of every experiment but `block`, which starts one per setting."""
    rows = []
    for repeat in range(args.repeats):
        for label, overrides in EXPERIMENTS[name].items():
            cfg = RunConfig(**base, **overrides)
            own = name == "block"
            with teacher(cfg, teacher_dir) if own else contextlib.nullcontext(shared) as (urls, eos):
                row = {"experiment": name, "setting": label, "repeat": repeat, **overrides}
                row |= measure(cfg, base["student_model"], urls, eos, args.seconds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def run_all(args: argparse.Namespace, teacher_dir: Path, student: str) -> list[dict]:
    """One teacher server for every experiment but `block`, warmed by a discarded first measurement."""
    base = {"student_model": student, "actor_num_cpus": 0.5, "gamma_max": 16, "max_new_tokens": 64}
    base |= {"student_kv_cache_gib": args.kv_cache_gib, "teacher_kv_cache_gib": args.kv_cache_gib}
    with contextlib.ExitStack() as stack:
        shared = None
        if any(name != "block" for name in args.only):
            server_cfg = RunConfig(**base, adaptive_gamma=True)  # room for the longest adaptive draft
            shared = stack.enter_context(teacher(server_cfg, teacher_dir))
            measure(RunConfig(**base), student, *shared, args.seconds / 2)  # first batches compile
        return [r for name in args.only for r in run_experiment(name, args, base, shared, teacher_dir)]


def table(rows: list[dict]) -> str:
    """Mean over repeats per setting, with the range of committed tokens/s."""
    keys = ("committed_tokens_per_s", "draft_acceptance")
    keys += ("teacher_tokens_per_committed", "floor_per_committed")
    lines = [
        "| experiment | setting | committed tok/s (range) | acceptance | teacher tok / committed | floor |",
        "|---|---|---|---|---|---|",
    ]
    for exp, setting in dict.fromkeys((r["experiment"], r["setting"]) for r in rows):
        mine = [r for r in rows if (r["experiment"], r["setting"]) == (exp, setting)]
        m = {k: statistics.fmean(r[k] for r in mine) for k in keys}
        speeds = [r["committed_tokens_per_s"] for r in mine]
        lines.append(
            f"| {exp} | {setting} | {m[keys[0]]:.2f} ({min(speeds):.2f}-{max(speeds):.2f}) | "
            f"{m[keys[1]]:.3f} | {m[keys[2]]:.2f} | {m[keys[3]]:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from trainer.models import resolve_models

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    ap.add_argument("--seconds", type=float, default=60.0, help="measuring time per setting")
    ap.add_argument("--student", help="student model dir (default: the pruned initialisation)")
    ap.add_argument(
        "--teacher_model", default="default", help="teacher model dir (default: the embedded one)"
    )
    ap.add_argument("--repeats", type=int, default=2, help="interleaved passes over the settings")
    ap.add_argument("--kv_cache_gib", type=float, default=1.0, help="KV cache of each engine")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "rollout_speed.json")
    args = ap.parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    models = RunConfig(teacher_model=args.teacher_model, student_model=args.student or "default")
    teacher_dir, student = resolve_models(models)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    rows = run_all(args, teacher_dir, str(student))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"student": str(student), "seconds": args.seconds, "rows": rows, "table": table(rows)},
            indent=1,
        )
    )
    print(table(rows))


if __name__ == "__main__":
    main()
