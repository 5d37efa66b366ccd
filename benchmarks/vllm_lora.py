"""LoRA-trained student in the actors' vLLM engines: merged-weight reloads vs vLLM's own LoRA (issue 14).

Each engine runs in its own child process, one after the other (vLLM-CPU turns torch.compile off for an
engine with enable_lora, so the two need separate engines; a fresh process gives each the same start):

  merged  plain student engine: reload_weights of the full merged state dict vs only the LoRA target
          modules (q/k/v and gate/up sent whole), greedy outputs of both, generation throughput.
  lora    engine with enable_lora: throughput without / with a rank-r adapter, greedy outputs with the
          adapter (compared with the merged weights'), cost of switching to a new adapter version
          (peft save_pretrained to /dev/shm + a 1-token generate with the new LoRARequest vs the old one).

    flock /tmp/heavy.lock .venv/bin/python -m benchmarks.vllm_lora [--dtype float32] [--rank 16]

In float32 the adapter's greedy outputs equal the merged weights' token for token; in bfloat16 they part after
a few tokens, as bf16 vs fp32 of the same weights do (rounding, not a bug).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from shared import reaper

SHM = Path("/dev/shm/skd-vllm-lora")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(student: str, rank: int, out: Path, noise: float, seed: int) -> None:
    """peft's init (B = 0) plus noise on lora_B, so that the adapter changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, noise)
    model.save_pretrained(out)


def merged_state_dicts(student: str, adapter: Path, dtype: torch.dtype):
    """(base, full merged, target modules only) state dicts in checkpoint names, in the engine's dtype."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    tied = base.config.tie_word_embeddings  # vLLM skips a tied lm_head.weight: leave it out
    base_sd = {
        k: v.to(dtype).clone() for k, v in base.state_dict().items() if not (tied and k == "lm_head.weight")
    }
    model = PeftModel.from_pretrained(base, adapter)
    partial = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer):
                key = name.removeprefix("base_model.model.") + ".weight"
                partial[key] = (module.base_layer.weight + module.get_delta_weight("default")).to(dtype)
    return base_sd, {**base_sd, **partial}, partial


def make_llm(args, **extra):
    from vllm import LLM

    from shared.engine_settings import engine_kwargs

    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    kw = engine_kwargs(max_model_len=512, kv_cache_gib=args.kv_cache_gib)
    return LLM(model=args.student, dtype=args.dtype, seed=0, gpu_memory_utilization=0.5, **kw, **extra)


def prompts(llm, n: int) -> list[dict]:
    tok = llm.get_tokenizer()
    texts = [
        f"Question {i}: what is {i} plus {3 * i + 7}? Explain the steps, then tell a story." for i in range(n)
    ]
    return [{"prompt_token_ids": tok.encode(t)} for t in texts]


def generate(llm, ps, max_tokens: int, lora=None) -> tuple[list[list[int]], float]:
    from vllm import SamplingParams

    sp = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, detokenize=False)
    t = time.perf_counter()
    outs = llm.generate(ps, sp, lora_request=lora, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs], time.perf_counter() - t


def throughput(llm, ps, max_tokens: int, lora=None) -> float:
    generate(llm, ps, max_tokens, lora)  # warm-up
    llm.reset_prefix_cache()
    toks, dt = generate(llm, ps, max_tokens, lora)
    return sum(map(len, toks)) / dt


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def phase_merged(args) -> dict:
    base, full, partial = merged_state_dicts(args.student, SHM / "v0", getattr(torch, args.dtype))
    llm = make_llm(args)
    ps = prompts(llm, args.seqs)

    def reload(sd):
        llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": list(sd.items()), "is_checkpoint_format": True}
        )
        llm.reset_prefix_cache()

    out = {"tok_s": throughput(llm, ps, args.tokens), "base": generate(llm, ps, args.tokens)[0]}
    reload(full)
    out["full"] = generate(llm, ps, args.tokens)[0]
    reload(base)
    reload(partial)  # only the target modules: embeddings and norms must stay as they are
    out["partial"] = generate(llm, ps, args.tokens)[0]
    out["reload_full_s"] = timed(lambda: reload(full), args.repeats)
    out["reload_partial_s"] = timed(lambda: reload(partial), args.repeats)
    out["tok_s_merged"] = throughput(llm, ps, args.tokens)
    out["n_full"], out["n_partial"] = (
        sum(v.numel() for v in full.values()),
        sum(v.numel() for v in partial.values()),
    )
    return out


def phase_lora(args) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from vllm.lora.request import LoRARequest

    llm = make_llm(args, enable_lora=True, max_lora_rank=args.rank, max_loras=1)
    ps = prompts(llm, args.seqs)
    out = {"tok_s_nolora": throughput(llm, ps, args.tokens)}
    v0 = LoRARequest("v0", 1, str(SHM / "v0"))
    out["tok_s_lora"] = throughput(llm, ps, args.tokens, v0)
    llm.reset_prefix_cache()
    out["lora"] = generate(llm, ps, args.tokens, v0)[0]

    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.student), SHM / "v0")
    old, saves, loads = v0, [], []
    for i in range(1, args.repeats + 2):  # version 1 is the warm-up
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.add_(torch.randn_like(p) * 1e-3)  # a "training step"
        t = time.perf_counter()
        peft.save_pretrained(SHM / f"v{i}")
        save_s = time.perf_counter() - t
        new = LoRARequest(f"v{i}", i + 1, str(SHM / f"v{i}"))
        llm.reset_prefix_cache()
        t_old = generate(llm, ps[:1], 1, old)[1]
        llm.reset_prefix_cache()
        t_new = generate(llm, ps[:1], 1, new)[1]
        if i > 1:
            saves.append(save_s)
            loads.append(t_new - t_old)
            shutil.rmtree(SHM / f"v{i - 1}")  # the old version's files (vLLM keeps its own copy)
        old = new
    out["save_s"], out["load_s"] = statistics.median(saves), statistics.median(loads)
    return out


def agree(a: list[list[int]], b: list[list[int]]) -> str:
    """'equal sequences/total (mean common-prefix tokens)'."""
    prefix = [
        next((i for i, (x, y) in enumerate(zip(s, t)) if x != y), min(len(s), len(t))) for s, t in zip(a, b)
    ]
    return f"{sum(s == t for s, t in zip(a, b))}/{len(a)} (prefix {statistics.mean(prefix):.1f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default=None, help="HF student dir (default: the embedded default student)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--seqs", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64, help="generated tokens per sequence")
    ap.add_argument("--noise", type=float, default=0.005, help="std of the noise put on lora_B")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kv-cache-gib", type=float, default=0.25)
    ap.add_argument("--phase", choices=["merged", "lora"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    if args.phase:  # child: one engine, results as JSON on the last stdout line
        try:
            result = (phase_merged if args.phase == "merged" else phase_lora)(args)
        except Exception as e:  # report, e.g., LoRA being unsupported on this backend
            result = {"error": f"{type(e).__name__}: {e}"}
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.student is None:
        from trainer.models import ensure_default_teacher, ensure_pruned_student

        args.student = str(ensure_pruned_student(ensure_default_teacher(), 2))
    shutil.rmtree(SHM, ignore_errors=True)
    make_adapter(args.student, args.rank, SHM / "v0", args.noise, seed=0)
    res = {}
    for phase in ("merged", "lora"):
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.vllm_lora",
            *(argv or sys.argv[1:]),
            "--student",
            args.student,
        ]
        proc = subprocess.run([*cmd, "--phase", phase], capture_output=True, text=True)
        line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT ")), None)
        res[phase] = (
            json.loads(line[7:]) if line else {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
        )
    shutil.rmtree(SHM, ignore_errors=True)
    report(args, res["merged"], res["lora"])


def report(args, m: dict, lo: dict) -> None:
    """The two phases' figures as a two-column table."""
    print(
        f"\nstudent {args.student}, {args.dtype}, rank {args.rank}, {args.seqs} seqs x {args.tokens} tokens"
    )
    if "error" in m:
        print("merged phase failed:", m["error"])
        return
    rows = [
        (f"reload_weights full merged ({m['n_full'] / 1e6:.1f}M params)", f"{m['reload_full_s']:.3f} s"),
        (
            f"reload_weights target modules only ({m['n_partial'] / 1e6:.1f}M)",
            f"{m['reload_partial_s']:.3f} s",
        ),
        ("greedy: partial reload == full reload", agree(m["partial"], m["full"])),
        ("greedy: merged != base (adapter changes outputs)", agree(m["full"], m["base"])),
        ("generate tok/s, plain engine (base / merged)", f"{m['tok_s']:.0f} / {m['tok_s_merged']:.0f}"),
    ]
    if "error" in lo:
        rows.append(("vLLM LoRA (enable_lora)", "FAILED: " + lo["error"][-300:]))
    else:
        rows += [
            ("generate tok/s, enable_lora engine, no adapter", f"{lo['tok_s_nolora']:.0f}"),
            (f"generate tok/s, enable_lora engine, rank-{args.rank} adapter", f"{lo['tok_s_lora']:.0f}"),
            ("greedy: adapter == merged weights", agree(lo["lora"], m["full"])),
            ("adapter switch: save_pretrained to /dev/shm", f"{lo['save_s']:.3f} s"),
            ("adapter switch: load (1-token generate, new - old)", f"{lo['load_s']:.3f} s"),
        ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
