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


def test_the_student_response_length_is_read_against_the_teachers(tmp_path):
    teacher = {"eval/teacher_response_tokens": 50.0, "eval/teacher_repeated_4grams": 0.02}
    records = [
        {**_eval(0, 0.02, 2.2, 0.0), "eval/response_tokens": 64.0, "eval/repeated_4grams": 0.6,
         "eval/kl_on_teacher_responses": 3.1, **teacher},
        {**_eval(30, 0.8, 0.3, 0.0), "eval/response_tokens": 48.5, "eval/repeated_4grams": 0.05,
         "eval/kl_on_teacher_responses": 0.4, **teacher},
    ]  # fmt: skip
    text = write_report(tmp_path, {"method": "skd"}, records, {}).read_text()
    assert (
        "Held-out response tokens 64.0 -> 48.5 (the teacher's greedy responses: 50.0); repeated 4-grams "
        "0.60 -> 0.05 (the teacher's: 0.02); KL on the teacher's responses 3.100 -> 0.400." in text
    )
    # the teacher's figures are in that line only: neither columns nor metrics that "stay put"
    assert "| step | acceptance | kl | kl_on_teacher_responses | repeated_4grams | response_tokens |" in text
    assert "left out of the table: exact_match 0. A task" in text


def test_a_student_that_repeats_itself_far_more_than_the_teacher_is_called_out(tmp_path):
    def record(step: int, repeated: float) -> dict:
        return {**_eval(step, 0.9, 0.2, 0.0), "eval/response_tokens": 64.0, "eval/repeated_4grams": repeated,
                "eval/kl_on_teacher_responses": 4.5, "eval/teacher_response_tokens": 30.0,
                "eval/teacher_repeated_4grams": 0.04}  # fmt: skip

    collapsed = write_report(tmp_path, {"method": "skd"}, [record(0, 0.3), record(30, 0.98)], {}).read_text()
    assert "**The student repeats itself far more than the teacher**" in collapsed
    healthy = write_report(tmp_path, {"method": "skd"}, [record(0, 0.3), record(30, 0.06)], {}).read_text()
    assert "repeats itself" not in healthy
