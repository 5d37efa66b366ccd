"""Code both sides import: the wire protocol (`protocol`), the SKD rule (`skd`), the HTTP client (`client`)
and tiny test models (`tiny_models`). Imports neither `rollout_server` nor `trainer`."""
