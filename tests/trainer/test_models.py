"""Layer pruning of a teacher into a student: which layers are kept, and that the copy is the teacher's."""

from __future__ import annotations

import pytest
import torch

from trainer.config import RunConfig
from trainer.models import default_student, ensure_pruned_student, kept_layers


def test_kept_layers_keep_the_first_and_the_last_evenly_spaced():
    assert kept_layers(30, keep_every=2) == [*range(0, 30, 2), 29]
    assert kept_layers(30, layers=22) == [0, 1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 17, 18, 19, 21, 22, 23,
                                          25, 26, 28, 29]  # fmt: skip
    assert kept_layers(4, layers=4) == [0, 1, 2, 3] and kept_layers(5, layers=2) == [0, 4]
    for bad in ({"layers": 1}, {"layers": 31}, {}, {"keep_every": 2, "layers": 4}):
        with pytest.raises(ValueError):
            kept_layers(30, **bad)


def _teacher5(tiny_models, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_models["teacher"])
    config.num_hidden_layers, config.layer_types = 5, None
    torch.manual_seed(0)
    teacher = AutoModelForCausalLM.from_config(config)
    teacher.save_pretrained(tmp_path / "teacher5")
    AutoTokenizer.from_pretrained(tiny_models["teacher"]).save_pretrained(tmp_path / "teacher5")
    return teacher


def test_a_student_pruned_to_a_layer_count_holds_those_teacher_layers(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    teacher = _teacher5(tiny_models, tmp_path)
    out = ensure_pruned_student(tmp_path / "teacher5", cache_dir=tmp_path, layers=3)
    assert out.name == "teacher5-layers3"
    student = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert student.config.num_hidden_layers == 3
    for mine, i in zip(student.model.layers, [0, 2, 4], strict=True):
        for (name, a), b in zip(mine.state_dict().items(), teacher.model.layers[i].state_dict().values()):
            assert torch.equal(a, b), (i, name)
    assert torch.equal(student.lm_head.weight, teacher.lm_head.weight)
    assert ensure_pruned_student(tmp_path / "teacher5", cache_dir=tmp_path, layers=3) == out  # cached


def test_the_default_student_is_pruned_as_the_config_says(tiny_models, tmp_path):
    """student_layers by default (24 of the embedded teacher's 30), prune_keep_every instead when given;
    both at once is refused, naming them."""
    from transformers import AutoConfig

    _teacher5(tiny_models, tmp_path)
    teacher = tmp_path / "teacher5"
    assert RunConfig().student_layers == 24 and RunConfig().prune_keep_every is None
    by_count = default_student(teacher, RunConfig(student_layers=4, cache_dir=tmp_path))
    by_stride = default_student(teacher, RunConfig(prune_keep_every=2, cache_dir=tmp_path))
    assert (by_count.name, AutoConfig.from_pretrained(by_count).num_hidden_layers) == ("teacher5-layers4", 4)
    assert (by_stride.name, AutoConfig.from_pretrained(by_stride).num_hidden_layers) == ("teacher5-keep2", 3)
    with pytest.raises(ValueError, match="student_layers and prune_keep_every"):
        RunConfig(student_layers=20, prune_keep_every=2)
