"""SKD teacher service: FastAPI + uvicorn over a vLLM engine.

- `config`: ServerConfig (CLI flags / ROLLOUT_* env vars)
- `engine`: TeacherEngine, the SKD operations (/verify, /score, /generate) over vLLM's AsyncLLM
- `validation`: request checks against the served model's limits
- `metrics`: Prometheus metrics
- `app`: the HTTP routes; `__main__` runs them under uvicorn
"""
