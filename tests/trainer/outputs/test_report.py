"""report.md: the held-out table shows what moved; a metric with one value at every evaluation gets a line."""

from __future__ import annotations

from trainer.outputs.report import write_report


def _eval(step, acceptance, kl, exact):
    return {"step": step, "eval/acceptance": acceptance, "eval/kl": kl, "eval/exact_match": exact}


def test_a_task_metric_that_never_moves_is_a_line_not_a_column(tmp_path):
    records = [_eval(0, 0.02, 2.2, 0.0), {"step": 1, "train/loss": 1.5}, _eval(1, 0.6, 0.9, 0.0)]
    text = write_report(tmp_path, {"method": "skd"}, records, {"steps": 1}).read_text()
    table = [line for line in text.splitlines() if line.startswith("| step")]
    assert table == ["| step | acceptance | kl |"]
    assert "| 1 | 0.6 | 0.9 |" in text
    assert "so left out of the table: exact_match 0." in text


def test_a_single_evaluation_keeps_every_column(tmp_path):
    text = write_report(tmp_path, {"method": "skd"}, [_eval(3, 0.5, 1.0, 0.0)], {}).read_text()
    assert "| step | acceptance | exact_match | kl |" in text and "left out" not in text
