"""Build-time and test-time code, not shipped (the wheel holds rollout_server/, shared/ and trainer/):

- `tiny_models`    the few-MB models the tests and the benchmarks' quick modes build
- `prompt_sets`    the generators of the shipped prompt sets (trainer/data/prompt_sets/*.jsonl, package data):
                   `python -m devtools.prompt_sets.make_<name>` rewrites them; the tests prove the shipped
                   files equal the generators' output
"""
