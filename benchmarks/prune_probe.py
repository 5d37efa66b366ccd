"""How much of a task-tuned teacher's arithmetic survives layer pruning, before any training.

    python -m benchmarks.prune_probe TEACHER_DIR RESPONSES.jsonl 30 28 26 24 22 [STUDENT_DIR ...]

On the teacher's correct greedy responses to held-out word problems (an `eval_responses/step_N.jsonl` of the
paper's teacher stage), teacher-forced: per model (a layer count of the teacher, pruned by
`trainer.models.kept_layers`, or a model dir) the share of response tokens and of digit tokens whose argmax is
the teacher's, and of items with every digit right. benchmarks.paper chose its student's layers from this.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "trainer/data/prompt_sets/word_problems/test.jsonl"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", type=Path)
    p.add_argument("responses", type=Path)
    p.add_argument("models", nargs="+", help="layer counts of the teacher to keep, or model dirs")
    p.add_argument("--items", type=int, default=60)
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.models import ensure_pruned_student

    tok = AutoTokenizer.from_pretrained(args.teacher)
    questions = [json.loads(line)["question"] for line in DATA.open()]
    correct = [json.loads(line) for line in args.responses.open()]
    items = []
    for r in [r for r in correct if r["scores"].get("exact_match") == 1.0][: args.items]:
        chat = [{"role": "user", "content": questions[r["index"]]}]
        prompt = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        items.append(
            (
                tok(prompt, add_special_tokens=False).input_ids,
                tok(r["response"], add_special_tokens=False).input_ids,
            )
        )
    cache = Path(tempfile.mkdtemp(prefix="prune-probe-"))
    for name in args.models:
        path = (
            ensure_pruned_student(args.teacher, None, cache, layers=int(name))
            if name.isdigit()
            else Path(name)
        )
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tokens = right = digits = digits_right = items_right = 0
        with torch.no_grad():
            for prompt, response in items:
                logits = model(torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1]
                every_digit = True
                for target, guess in zip(response, logits.argmax(-1).tolist(), strict=True):
                    tokens, right = tokens + 1, right + (target == guess)
                    if tok.decode([target]).strip().isdigit():
                        digits, digits_right = digits + 1, digits_right + (target == guess)
                        every_digit &= target == guess
                items_right += every_digit
        every = items_right / len(items)
        print(
            f"{name}: token acc {right / tokens:.3f}, digit-token acc {digits_right / digits:.3f}, "
            f"items with every digit right {every:.3f} ({len(items)} items)",
            flush=True,
        )


if __name__ == "__main__":
    main()
