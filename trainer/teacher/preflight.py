"""Pre-flight checks at job start, on one probe conversation. A run that passes them cannot lose hours to
a silent teacher bug; one that fails stops with `pre-flight check '<name>' failed: ...`.

- chat_templates   the teacher's and the student's chat templates render the probe to the same ids (SKD
                   compares token ids: a different template shifts every position)
- teacher_peaked   the teacher's distribution on the probe is far from uniform (a broken checkpoint, wrong
                   weights or a sleeping engine answers near-uniform log-probs)
- replicas_agree   every teacher URL answering now gives the probe's log-probs within `preflight_tolerance`
                   (a replica on other weights or another dtype would mix two teachers in one run)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import httpx

from shared.client import TeacherEndpoint, TeacherRefused
from shared.protocol import ScoreItem, ScoreRequest, TeacherTargets
from trainer.config import TeacherConfig
from trainer.errors import RunError

logger = logging.getLogger(__name__)

PROBE = [
    {"role": "user", "content": "Explain in two sentences why the sky is blue."},
    {"role": "assistant", "content": "Sunlight scatters off air molecules, and blue light scatters most."},
]


class PreflightFailed(RunError):
    def __init__(self, check: str, why: str):
        super().__init__(f"pre-flight check '{check}' failed: {why} (--preflight=false skips the checks)")


def render(tokenizer, messages: list[dict]) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        return tokenizer("\n".join(m["content"] for m in messages))["input_ids"]
    out = tokenizer.apply_chat_template(messages, tokenize=True)
    return list(out["input_ids"] if not isinstance(out, list) else out)


def chat_templates(teacher_dir: Path, student_tokenizer) -> list[int]:
    """The probe's ids (student template), after checking the teacher's template renders the same."""
    from transformers import AutoTokenizer

    ids = render(student_tokenizer, PROBE)
    if not (teacher_dir / "tokenizer_config.json").exists():
        logger.info("pre-flight: no local teacher tokenizer; chat template check skipped")
        return ids
    teacher_ids = render(AutoTokenizer.from_pretrained(teacher_dir), PROBE)
    if teacher_ids != ids:
        at = next(
            (i for i, (a, b) in enumerate(zip(teacher_ids, ids)) if a != b), min(len(ids), len(teacher_ids))
        )
        raise PreflightFailed(
            "chat_templates",
            f"teacher and student chat templates render the probe differently from token {at} "
            f"(teacher {teacher_ids[at : at + 5]}, student {ids[at : at + 5]})",
        )
    return ids


def score(urls: list[str], api_key: str | None, ids: list[int], k: int) -> dict[str, TeacherTargets]:
    """The probe's teacher log-probs from every URL that answers now."""
    req = ScoreRequest(items=[ScoreItem(token_ids=ids, start=1)], num_logprobs=k)
    out = {}
    for url in urls:
        try:
            with TeacherEndpoint(url, api_key) as teacher:
                out[url] = teacher.score(req).items[0]
        except httpx.TransportError:
            continue  # down now: the client brings it in once it answers
        except TeacherRefused as e:
            raise PreflightFailed("teacher_peaked", str(e)) from None
    return out


def teacher_peaked(targets: TeacherTargets, vocab_size: int) -> None:
    """The mean probability of the teacher's top-1 token must be well above uniform's 1/V."""
    top1 = sum(math.exp(lp[0]) for lp in targets.teacher_topk_logprobs) / len(targets.teacher_topk_logprobs)
    floor = min(0.05, 10 / vocab_size)
    if top1 < floor:
        raise PreflightFailed(
            "teacher_peaked",
            f"the teacher's mean top-1 probability on the probe is {top1:.2e} (uniform: "
            f"{1 / vocab_size:.2e}, needed: {floor:.2e}); is it the right checkpoint, fully loaded?",
        )


def replicas_agree(scored: dict[str, TeacherTargets], tolerance: float) -> None:
    """Each replica's log-probs of the tokens in both top-k lists, position by position, match the first's."""
    (first, ref), *others = scored.items()
    for url, other in others:
        worst, where = 0.0, 0
        for pos, (ids_a, lps_a, ids_b, lps_b) in enumerate(
            zip(
                ref.teacher_topk_ids,
                ref.teacher_topk_logprobs,
                other.teacher_topk_ids,
                other.teacher_topk_logprobs,
            )
        ):
            b = dict(zip(ids_b, lps_b))
            diff = max((abs(lp - b[t]) for t, lp in zip(ids_a, lps_a) if t in b), default=math.inf)
            if diff > worst:
                worst, where = diff, pos
        if worst > tolerance:
            raise PreflightFailed(
                "replicas_agree",
                f"teachers {first} and {url} differ by {worst:.3g} in log-prob at probe position {where + 1} "
                f"(tolerance {tolerance}); are they serving the same model and dtype?",
            )


def run_checks(
    cfg: TeacherConfig,
    teacher_dir: Path,
    student_dir: Path,
    urls: list[str],
    vocab_size: int,
    num_logprobs: int,
) -> None:
    from transformers import AutoTokenizer

    ids = chat_templates(teacher_dir, AutoTokenizer.from_pretrained(student_dir))
    scored = score(urls, cfg.teacher_key(), ids, min(num_logprobs, 20))
    if not scored:
        raise PreflightFailed("teacher_peaked", "no teacher URL answered the probe")
    teacher_peaked(next(iter(scored.values())), vocab_size)
    replicas_agree(scored, cfg.preflight_tolerance)
    logger.info("pre-flight checks passed (%d teacher URL(s) agree on the probe)", len(scored))
