"""Rollout methods: how a rollout actor turns prompts into training samples.

A method advances a group of in-flight sequences by one step (one batched student call and/or one batched
teacher call) and marks the finished ones done. The actor groups its sequences by method and runs the
groups' steps concurrently. What each method needs (references or not) and yields (KD or SFT samples) is
declared on its class, and the trainer reads it from `METHODS`.

- skd            the student drafts `gamma` tokens, the teacher keeps them up to the first outside its top-K
                 and replaces that one (/verify)
- on_policy      the same with K = infinity: nothing is replaced, the student's own response (drafted whole)
- teacher_sampling  the teacher samples the response (K = 0 without the round trips: one /generate)
- supervised_kd  teacher targets on the reference response (/score)
- sft            the reference response itself, trained with cross-entropy
- mixed_skd      hands each new sequence to supervised_kd with probability `mixed_lambda`, else to skd
- mixed_on_policy  the same, else to on_policy: the paper's `mixed` baseline

- base      `InFlight`, `RolloutEnv`, `Method` (what every method extends)
- builtin   the seven methods above

Adding a method: a `Method` subclass with `name`, `needs_reference`, `sample_kind` and `step`, and one line
`METHODS[name] = cls` (in your own code too: the job checks --method against this registry when it starts).
"""

from __future__ import annotations

from trainer.methods.base import InFlight, Method, RolloutEnv
from trainer.methods.builtin import BUILTIN, ON_POLICY_K, Speculative

METHODS: dict[str, type[Method]] = {m.name: m for m in BUILTIN}
RENAMED = {
    "mixed": "method 'mixed' is now two methods, named for what they mix: mixed_skd (supervised_kd or skd, "
    "what 'mixed' ran before) or mixed_on_policy (supervised_kd or on_policy, the SKD paper's mixed)"
}


def lookup(name: str) -> type[Method]:
    """The registered method `name`; an error listing the registered ones otherwise."""
    if name in RENAMED and name not in METHODS:
        raise ValueError(RENAMED[name])
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "ON_POLICY_K", "InFlight", "Method", "RolloutEnv", "Speculative", "lookup"]
