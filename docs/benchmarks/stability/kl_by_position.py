"""Where a run's held-out KL sits: the student's greedy held-out responses at a step, scored token by token
over the full vocabulary against the teacher (transformers, fp32), by position and by share.

    python docs/benchmarks/stability/kl_by_position.py RUN_DIR STEP

RUN_DIR is a `trainer/main.py` output dir of the default job (its checkpoint at STEP and
eval_responses/step_<STEP>.jsonl; checkpoints are not committed, so this reads a run of your own). The
responses are re-tokenised from their text, EOS appended; the job's own `eval/kl` uses the teacher's top 20
log-probs and a tail bucket (a lower bound), so the mean here is higher.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from trainer.config import RunConfig
from trainer.data.prompts import load_prompts
from trainer.models import ensure_default_teacher


@torch.no_grad()
def token_kls(teacher, student, prompt: list[int], response: list[int]) -> np.ndarray:
    ids = torch.tensor([prompt + response])
    lt = torch.log_softmax(teacher(ids).logits[0, len(prompt) - 1 : -1].float(), -1)
    ls = torch.log_softmax(student(ids).logits[0, len(prompt) - 1 : -1].float(), -1)
    return (lt.exp() * (lt - ls)).sum(-1).numpy()


def main() -> None:
    run, step = Path(sys.argv[1]), int(sys.argv[2])
    teacher_dir = ensure_default_teacher()
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    _, _, eval_ids = load_prompts(RunConfig(), tok)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(
        run / "checkpoints" / f"step_{step:06d}", dtype=torch.float32
    )
    rows = [json.loads(line) for line in (run / "eval_responses" / f"step_{step:06d}.jsonl").open()]
    kls, where, last = [], [], []
    for row, prompt in zip(rows, eval_ids):
        response = [*tok(row["response"], add_special_tokens=False).input_ids, tok.eos_token_id]
        kl = token_kls(teacher, student.eval(), prompt, response)
        kls += list(kl)
        where += list(np.linspace(0, 1, len(kl)))
        last.append(kl[-1])
    kls, where = np.array(kls), np.array(where)
    print(f"{len(kls)} tokens: mean KL {kls.mean():.3f}, median {np.median(kls):.3f}")
    share = np.cumsum(np.sort(kls)[::-1]) / kls.sum()
    for top in (0.05, 0.1, 0.2):
        print(f"the top {top:.0%} of positions carry {share[int(top * len(kls)) - 1]:.0%} of the sum")
    quarters = [kls[(where >= q / 4) & (where < (q + 1) / 4 + (q == 3))].mean() for q in range(4)]
    print("mean by quarter of the response: " + " / ".join(f"{m:.2f}" for m in quarters))
    print(f"at the final (EOS) position: {np.mean(last):.2f}")


if __name__ == "__main__":
    main()
