"""Every process that falls back from a corrupt newest checkpoint says so, not only the one that moved it aside.

Robots and the learner start together and race to quarantine the same corrupt version; the loser used to find it
gone and start on the older version with an empty ``quarantined`` status (found by test_fault_injection.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lwd.policy.checkpoint import (
    MANIFEST_FILE,
    fallback_report,
    latest_valid_checkpoint,
    quarantine_checkpoint,
    quarantined_versions,
    save_checkpoint,
)
from lwd.policy.model import FlowVLA, PolicyConfig

SMALL = dict(image_size=32, horizon=4, cond_dim=32, hidden=64, vision_channels=8, text_dim=16)


@pytest.fixture
def policies(tmp_path) -> Path:
    """policies/ with v0, v1, v2 of a small model, v2 corrupt (its manifest names other weights)."""
    p = tmp_path / "store" / "policies"
    for v in range(3):
        save_checkpoint(p, FlowVLA(PolicyConfig(**SMALL)), v)
    manifest = json.loads((p / "v2" / MANIFEST_FILE).read_text())
    (p / "v2" / MANIFEST_FILE).write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    return p


def test_the_process_that_moved_it_and_the_ones_that_came_later_report_the_same(policies):
    first = latest_valid_checkpoint(policies)
    assert first.checkpoint.version == 1 and [q.version for q in first.quarantined] == [2]
    later = latest_valid_checkpoint(policies)  # v2 is gone by the time this process lists policies/
    assert later.checkpoint.version == 1 and later.quarantined == []
    for found in (first, later):
        (q,) = fallback_report(policies, found)
        assert (q.version, q.reason) == (2, "sha256_mismatch") and "does not match manifest" in q.detail
        assert q.to is not None and q.to.is_dir() and q.to.name.startswith("v2__")


def test_only_versions_newer_than_the_running_one_are_reported(policies):
    latest_valid_checkpoint(policies)
    save_checkpoint(policies, FlowVLA(PolicyConfig(**SMALL)), 3)  # the learner published past the corrupt v2
    found = latest_valid_checkpoint(policies)
    assert found.checkpoint.version == 3 and fallback_report(policies, found) == []
    assert [q.version for q in quarantined_versions(policies)] == [2]


def test_one_entry_per_version_newest_move_wins_and_a_missing_reason_is_unknown(policies):
    quarantine_checkpoint(policies, 2, "sha256_mismatch", "first")
    save_checkpoint(policies, FlowVLA(PolicyConfig(**SMALL)), 2)  # (a second v2 a test put there, moved again)
    moved = quarantine_checkpoint(policies, 2, "unreadable_weights", "second")
    (q,) = quarantined_versions(policies, newer_than=1)
    assert (q.version, q.reason, q.detail, q.to) == (2, "unreadable_weights", "second", moved)
    (moved.parent / f"{moved.name}.reason.txt").unlink()  # the mover has not written it yet
    (q,) = quarantined_versions(policies, newer_than=1)
    assert q.reason == "unknown" and q.to == moved
    assert quarantined_versions(policies, newer_than=2) == []
