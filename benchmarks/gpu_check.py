"""The learner's GPU path, checked in one go (issue 28): a machine with a GPU and torch, transformers and
peft is enough (no vLLM, no Ray); `--cpu` (what `SKD_GPU_CHECK_CPU=1 bash scripts/gpu_check.sh` runs) does
every step on this CPU with a tiny student, so the script is known to run before a GPU is at hand.

    bash scripts/gpu_check.sh                        # a GPU: Qwen2.5-0.5B- and 1.5B-shaped students, < 8 min
    SKD_GPU_CHECK_CPU=1 bash scripts/gpu_check.sh    # the dry run: every step on the CPU (~1 min)

Steps, one table row each (a row that fails says why, and the check exits 1):
- memory     one training step per setting, stacked as the README's sizing section stacks them (bf16,
             + gradient checkpointing, + `loss_chunk_tokens=1024`, + LoRA r=16), 8 x 512 response tokens:
             peak memory, and the persistent state (weights + gradients + optimizer, summed over the tensors)
             against the README's bytes per parameter (16; LoRA: 2 per frozen bf16 weight + 16 per adapter)
- fsdp       the FSDP2 path (`fully_shard` per decoder layer and the root) in a process group of one rank
             (NCCL on CUDA): the same first loss as the unsharded learner, its weights gathered and exported
- resume     a step, a checkpoint, a new learner from it: its next loss equals the uninterrupted run's
             (full and LoRA)
- broadcast  the collective transport's wire format (trainer.weights.collective: layout, flatten, unflatten)
             from a learner (rank 0) to a stand-in receiver in a second process, three pushes: NCCL across
             two GPUs when there are two; on one GPU NCCL refuses two ranks ("Duplicate GPU"), so the
             row says so and the broadcast runs over gloo with CUDA tensors. Checksums equal; export and
             broadcast seconds per push.
Random weights in the real shapes (no model download): memory and speed do not depend on their values.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import socket
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch

from benchmarks.learner_memory import SETTINGS

SHAPES = {  # Qwen2 configurations: the real ones for 0.5B and 1.5B (tied head), and a tiny one
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=256, vocab_size=2048),
    "0.5B": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936),
    "1.5B": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960, vocab_size=151936),
}  # fmt: skip

STACK = {  # the README's sizing section, stacked as a user would (benchmarks.learner_memory's settings)
    label: SETTINGS[name]
    for label, name in [
        ("bf16", "bf16"),
        ("+ ckpt", "bf16+ckpt"),
        ("+ chunk", "bf16+ckpt+chunk"),
        ("+ LoRA r=16", "bf16+ckpt+chunk+lora"),
    ]
}
STATE_TOLERANCE = 0.10  # measured persistent state within 10% of the README's bytes per parameter
LOSS_TOLERANCE = 1e-3  # relative: the same computation in another wrapping, or after a resume


def build_student(shape: str, out: Path, device: torch.device) -> Path:
    """A random Qwen2 student in `shape`, saved as an HF model dir with the tiny tokenizer (the learner
    reads only its pad id; the model's vocabulary is the real size)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from devtools.tiny_models import build_tokenizer

    if (out / "config.json").exists():
        return out
    build_tokenizer(out)
    config = Qwen2Config(**SHAPES[shape], tie_word_embeddings=True, max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it is fast
        model = Qwen2ForCausalLM(config).float()
    model.save_pretrained(out, safe_serialization=True)
    del model
    return out


def samples(n: int, tokens: int, vocab: int, seed: int) -> list:
    from benchmarks.learner_memory import batch

    return batch(n, tokens, vocab, seed=seed)


def run_config(device: torch.device, n: int, **settings):
    from trainer.config import RunConfig
    from trainer.learner.model import has_native_bf16

    if settings.get("learner_dtype") == "bf16" and not has_native_bf16(device):
        settings = {**settings, "learner_dtype": "fp32"}  # a CPU without bf16 arithmetic: the dry run goes on
    return RunConfig(
        batch_size=n, warmup_steps=0, lr_schedule="constant", trainer_device=str(device), **settings
    )


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # the RSS high-water mark back to the current RSS


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def state_bytes(learner) -> int:
    """Weights + gradients + optimizer state, summed over the tensors (what the sizing table counts)."""
    params = list(learner.model.parameters())
    total = sum(p.numel() * p.element_size() for p in params)
    total += sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    for state in learner.optimizer.state.values():
        total += sum(t.numel() * t.element_size() for t in state.values() if torch.is_tensor(t) and t.dim())
    return total


def predicted_state_bytes(learner, lora: bool) -> float:
    """The README's sizing rule: 16 bytes per trained parameter; LoRA: 2 per frozen bf16 base weight (4 in
    fp32, where a CPU without bf16 arithmetic runs the dry run)."""
    params = list(learner.model.parameters())
    trained = sum(p.numel() for p in params if p.requires_grad)
    frozen = sum(p.numel() for p in params if not p.requires_grad)
    return 16 * trained + (2 if lora and learner.cfg.learner_dtype == "bf16" else 4) * frozen


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and abs(a - b) <= LOSS_TOLERANCE * max(abs(b), 1e-6)


RESULT = {True: "ok", False: "FAIL", None: "refused, as expected"}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def row(step: str, what: str, measured: str, expected: str, ok: bool, **data) -> dict:
    return {"step": step, "what": what, "measured": measured, "expected": expected, "ok": ok, **data}


# --- the steps ----------------------------------------------------------------------------------------


def memory_rows(shape: str, model: Path, device: torch.device, n: int, tokens: int, tmp: Path) -> list[dict]:
    from trainer.learner.local import LocalLearner

    rows, last_peak = [], None
    for name, settings in STACK.items():
        learner = LocalLearner(run_config(device, n, **settings), model)
        data = samples(n, tokens, learner.lm.config.vocab_size, seed=0)
        _reset_peak(device)
        t0 = time.perf_counter()
        loss = learner.train_step(data)["loss"]
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = _peak_gib(device)
        state, predicted = state_bytes(learner), predicted_state_bytes(learner, "lora_rank" in settings)
        ok = math.isfinite(loss) and abs(state / predicted - 1) <= STATE_TOLERANCE
        # each saving must save on a GPU (a CPU's RSS high-water mark also counts the allocator's caches)
        shrinks = device.type != "cuda" or last_peak is None or peak <= last_peak * 1.02
        rows.append(
            row(
                "memory",
                f"{shape} {name}",
                f"peak {_size(peak * 2**30)}, state {_size(state)}, step {seconds:.2f} s, loss {loss:.3f}"
                + ("" if shrinks else " (peak above the setting before)"),
                f"state {_size(predicted)}",
                ok and shrinks,
                peak_gib=peak,
                state_gib=state / 2**30,
                predicted_state_gib=predicted / 2**30,
                trained_params=sum(p.numel() for p in learner.model.parameters() if p.requires_grad),
                frozen_params=sum(p.numel() for p in learner.model.parameters() if not p.requires_grad),
                lora="lora_rank" in settings,
                step_s=seconds,
                loss=loss,
                dtype=learner.cfg.learner_dtype,
            )
        )
        last_peak = peak
        del learner
    return rows


def _init_single_rank(device: torch.device) -> str:
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    return backend


def fsdp_rows(shape: str, model: Path, device: torch.device, n: int, tokens: int, tmp: Path) -> list[dict]:
    from torch.distributed.tensor import DTensor

    from trainer.learner.local import LocalLearner

    cfg = run_config(device, n, **STACK["+ chunk"])
    plain = LocalLearner(cfg, model)
    data = samples(n, tokens, plain.lm.config.vocab_size, seed=0)
    expected = plain.train_step(data)["loss"]
    del plain
    backend = _init_single_rank(device)
    try:
        learner = LocalLearner(cfg, model, sharded=True)
        sharded = all(isinstance(p, DTensor) for p in learner.model.parameters())
        _reset_peak(device)
        loss = learner.train_step(data)["loss"]
        peak = _peak_gib(device)
        exported = sum(a.nbytes for b in learner.export_weights(torch.bfloat16) for a in b["arrays"].values())
        del learner
    finally:
        torch.distributed.destroy_process_group()
    measured = f"loss {loss:.5f}; parameters DTensors: {sharded}; peak {_size(peak * 2**30)}"
    return [
        row(
            "fsdp",
            f"{shape} FSDP2, 1 rank over {backend} (+ chunk)",
            f"{measured}; exported {_size(exported)}",
            f"loss {expected:.5f} (unsharded)",
            sharded and _close(loss, expected),
            loss=loss,
            expected_loss=expected,
            peak_gib=peak,
        )
    ]


def resume_rows(shape: str, model: Path, device: torch.device, n: int, tokens: int, tmp: Path) -> list[dict]:
    from trainer.learner.local import LocalLearner

    rows = []
    for name in ("+ chunk", "+ LoRA r=16"):
        cfg = run_config(device, n, **STACK[name])
        first = LocalLearner(cfg, model)
        data = [samples(n, tokens, first.lm.config.vocab_size, seed=s) for s in (0, 1)]
        first.train_step(data[0])
        t0 = time.perf_counter()
        ckpt = first.save(tmp / f"resume-{len(rows)}", {"check": "gpu"})
        save_s = time.perf_counter() - t0
        expected = first.train_step(data[1])["loss"]
        del first
        gc.collect()
        resumed = LocalLearner(cfg, model, checkpoint=ckpt)
        state = resumed.load_state(ckpt)
        loss = resumed.train_step(data[1])["loss"]
        del resumed
        rows.append(
            row(
                "resume",
                f"{shape} {name}: step 1, checkpoint, new learner, step 2",
                f"step 2 loss {loss:.5f} after the resume (checkpoint written in {save_s:.1f} s)",
                f"{expected:.5f} (no resume)",
                state["step"] == 1 and _close(loss, expected),
                loss=loss,
                expected_loss=expected,
            )
        )
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _member(
    rank: int, backend: str, port: int, model: str, device: str, n: int, tokens: int, pushes: int, queue
):
    """One process of the broadcast: rank 0 a learner exporting pushes, rank 1 a stand-in receiver."""
    import torch.distributed as dist

    from trainer.weights.collective import flatten, layout, unflatten

    try:
        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=2,
            timeout=timedelta(seconds=90),
        )
        result = {"export_s": [], "broadcast_s": [], "bytes": 0, "equal": True}
        if rank == 0:
            from trainer.learner.local import LocalLearner

            learner = LocalLearner(run_config(dev, n, **STACK["+ chunk"]), model, device=dev)
            learner.train_step(samples(n, tokens, learner.lm.config.vocab_size, seed=0))  # trained weights
        for _ in range(pushes):
            if rank == 0:
                t0 = time.perf_counter()
                packed = learner.export_weights(torch.bfloat16)
                specs = [layout(b) for b in packed]
                result["export_s"].append(time.perf_counter() - t0)
            box = [specs if rank == 0 else None]
            dist.broadcast_object_list(box, src=0)
            specs = box[0]
            t0, sums = time.perf_counter(), []
            for i, spec in enumerate(specs):
                if rank == 0:
                    flat = flatten(packed[i], dev)
                else:
                    numel = sum(math.prod(shape) for _, shape in spec["tensors"])
                    flat = torch.empty(numel, dtype=getattr(torch, spec["dtype"]), device=dev)
                dist.broadcast(flat, src=0)
                sums.append([float(t.double().sum()) for t in unflatten(spec, flat).values()])
                result["bytes"] += flat.numel() * flat.element_size() if rank == 0 else 0
            if dev.type == "cuda":
                torch.cuda.synchronize()
            result["broadcast_s"].append(time.perf_counter() - t0)
            box = [sums if rank == 0 else None]
            dist.broadcast_object_list(box, src=0)
            result["equal"] &= box[0] == sums
            result["sums"] = sums  # the last push's, per tensor: what each rank holds
        dist.barrier()
        dist.destroy_process_group()
        queue.put((rank, result))
    except BaseException as e:  # the parent reports it as the row's reason
        queue.put((rank, {"error": _first_line(e)}))


def broadcast_once(
    backend: str, devices: tuple[str, str], model: Path, n: int, tokens: int, pushes: int
) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    args = (backend, port, str(model))
    procs = [
        ctx.Process(target=_member, args=(r, *args, devices[r], n, tokens, pushes, queue)) for r in (0, 1)
    ]
    for p in procs:
        p.start()
    results: dict[int, dict] = {}
    deadline = time.monotonic() + 240
    while len(results) < 2 and time.monotonic() < deadline:
        try:
            rank, result = queue.get(timeout=5)
            results[rank] = result
        except Exception:
            if all(not p.is_alive() for p in procs) and queue.empty():
                break
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    errors = [r["error"] for r in results.values() if "error" in r]
    if len(results) < 2 or errors:
        return {"error": errors[0] if errors else "a member did not finish in 240 s"}
    equal = results[0]["equal"] and results[1]["equal"]
    return {
        **results[0],
        "equal": equal,
        "sent_sums": results[0]["sums"],
        "received_sums": results[1]["sums"],
    }


def broadcast_rows(
    shape: str, model: Path, device: torch.device, n: int, tokens: int, tmp: Path, pushes: int = 3
) -> list[dict]:
    if device.type != "cuda":
        tries = [("gloo", ("cpu", "cpu"), "gloo, CPU tensors")]
    elif torch.cuda.device_count() >= 2:
        tries = [("nccl", ("cuda:0", "cuda:1"), "NCCL, two GPUs")]
    else:
        tries = [
            ("nccl", ("cuda:0", "cuda:0"), "NCCL, both ranks on one GPU"),
            ("gloo", ("cuda:0", "cuda:0"), "gloo, CUDA tensors, one GPU"),
        ]
    rows = []
    for backend, devices, label in tries:
        r = broadcast_once(backend, devices, model, n, tokens, pushes)
        if "error" in r:
            rows.append(
                row("broadcast", f"{shape} {label}", r["error"], "checksums equal", False, backend=backend)
            )
            continue
        steady = slice(1, None) if pushes > 1 else slice(None)  # the first push also sets the group up
        export = sum(r["export_s"][steady]) / len(r["export_s"][steady])
        seconds = sum(r["broadcast_s"][steady]) / len(r["broadcast_s"][steady])
        per_push = r["bytes"] / pushes
        rows.append(
            row(
                "broadcast",
                f"{shape} {label}, {pushes} pushes",
                f"{_size(per_push)} per push: export {export:.2f} s, broadcast {seconds:.2f} s "
                f"({per_push / seconds / 1e9:.2f} GB/s); checksums equal: {r['equal']}",
                "checksums equal",
                r["equal"],
                backend=backend,
                export_s=export,
                broadcast_s=seconds,
                bytes_per_push=per_push,
                sent_sums=r["sent_sums"],
                received_sums=r["received_sums"],
            )
        )
        if r["equal"]:
            break
    # On one GPU NCCL's refusal is expected: the check passes when the gloo fallback carried the pushes.
    if rows and rows[-1]["ok"]:
        for r in rows[:-1]:
            r["ok"] = None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="the dry run: every step on the CPU, tiny student")
    ap.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), help="default: 0.5B 1.5B (--cpu: tiny)")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--tokens", type=int, default=512, help="response tokens per sequence")
    ap.add_argument(
        "--out", type=Path, help="the rows as JSON (default: $OUT/gpu_check.json when $OUT is set)"
    )
    args = ap.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run the dry run with --cpu (SKD_GPU_CHECK_CPU=1)")
    device = torch.device("cpu" if args.cpu else "cuda", None if args.cpu else 0)
    shapes = args.shapes or (["tiny"] if args.cpu else ["0.5B", "1.5B"])
    if args.cpu:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU (dry run)"
    print(
        f"# GPU check on {name}: torch {torch.__version__}, {args.batch} x {args.tokens} response tokens",
        flush=True,
    )
    rows: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skd-gpu-check-") as tmp:
        tmp = Path(tmp)
        for i, shape in enumerate(shapes):
            model = build_student(shape, tmp / f"student-{shape}", device)
            steps = [memory_rows] + ([fsdp_rows, resume_rows, broadcast_rows] if i == 0 else [])
            for step in steps:  # the path's other checks run on the first shape
                try:
                    new = step(shape, model, device, args.batch, args.tokens, tmp)
                except Exception as e:
                    traceback.print_exc()
                    new = [row(step.__name__.removesuffix("_rows"), shape, _first_line(e), "-", False)]
                for r in new:
                    print(f"{r['step']:9} {RESULT[r['ok']]}: {r['what']}: {r['measured']}", flush=True)
                rows.extend(new)
    wall = time.perf_counter() - started
    print(
        f"\n{name}, torch {torch.__version__}, {args.batch} x {args.tokens} response tokens, {wall:.0f} s\n"
    )
    print("| step | what | measured | expected | result |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['step']} | {r['what']} | {r['measured']} | {r['expected']} | {RESULT[r['ok']]} |")
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps({"device": name, "torch": torch.__version__, "wall_s": wall, "rows": rows}, indent=1)
        )
    failed = [r for r in rows if r["ok"] is False]
    if failed:
        print(f"\n{len(failed)} step(s) failed: " + "; ".join(f"{r['step']} {r['what']}" for r in failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
