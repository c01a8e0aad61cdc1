"""`lwd info`: what is in an experience store (episodes, outcomes, policies, the learner's last metrics)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import list_versions, version_dir


def store_info(root: Path) -> dict:
    if not Path(root).is_dir():
        raise FileNotFoundError(f"no store at {root}")
    store = ExperienceStore(root)
    store.scan()
    eps = store.episodes()
    policies = []
    for v in list_versions(store.root / "policies"):
        try:
            m = json.loads((version_dir(store.root / "policies", v) / "manifest.json").read_text())
        except (OSError, ValueError):
            m = {}
        policies.append({"version": v, "algo": m.get("algo"), "parent": m.get("parent"),
                         "sha256": str(m.get("sha256", ""))[:16], "new_episodes": m.get("new_episodes")})
    last = None
    metrics = store.root / "learner" / "metrics.jsonl"
    if metrics.exists():
        lines = metrics.read_text().strip().splitlines()
        last = json.loads(lines[-1]) if lines else None
    return {
        "store": str(store.root),
        "episodes": len(eps),
        "by_source": dict(Counter(e.source for e in eps)),
        "by_robot": dict(Counter(e.robot for e in eps)),
        "by_task_outcome": dict(Counter(f"{e.task}:{e.outcome}" for e in eps)),
        "interventions": sum(e.num_interventions for e in eps),
        "quarantined": [str(p) for p in store.quarantined()],
        "policies": policies,
        "learner_last_metrics": last,
    }
