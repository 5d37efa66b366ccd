"""The Ray head's readiness for `ray job submit`: the dashboard answers and the head's job agent has
registered. The dashboard answers first; a job submitted before the agent registers fails with "No
available agent to submit job" after 10 s (seen on a loaded 2-core machine), so the compose healthcheck
(and the test that stands in for compose) waits for both. Exit code 0 when ready, 1 otherwise.

    python deploy/ray_head_ready.py [--gcs 127.0.0.1:6379] [--dashboard http://127.0.0.1:8265]
"""

from __future__ import annotations

import argparse
import sys
import urllib.request


def ready(gcs: str, dashboard: str) -> bool:
    from ray._private.ray_constants import KV_NAMESPACE_DASHBOARD
    from ray._raylet import GcsClient
    from ray.dashboard.consts import DASHBOARD_AGENT_ADDR_NODE_ID_PREFIX

    try:
        with urllib.request.urlopen(f"{dashboard}/api/version", timeout=4) as resp:
            if resp.status != 200:
                return False
        keys = GcsClient(address=gcs).internal_kv_keys(
            DASHBOARD_AGENT_ADDR_NODE_ID_PREFIX.encode(), KV_NAMESPACE_DASHBOARD
        )
    except Exception:  # not up yet: any failure means not ready
        return False
    return bool(keys)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gcs", default="127.0.0.1:6379")
    parser.add_argument("--dashboard", default="http://127.0.0.1:8265")
    args = parser.parse_args()
    sys.exit(0 if ready(args.gcs, args.dashboard) else 1)
