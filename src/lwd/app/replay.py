"""`lwd replay`: republish a recorded episode at its recorded timing, or re-run a policy on its observations."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lwd.data.bag import read_episode
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy


def replay_bag(bag: Path, namespace: str = "/replay", rate: float = 1.0, wait_s: float = 5.0) -> int:
    """Publish every recorded message (raw CDR bytes, no re-serialization) under ``namespace``.

    Waits up to ``wait_s`` for subscribers first (until some topics are matched and no more have been for 1 s), so
    the first messages are not lost.
    """
    import rclpy
    from rclpy.node import Node
    from rosbags.highlevel import AnyReader
    from rosidl_runtime_py.utilities import get_message

    from lwd.nodes.common import RELIABLE_QOS

    if rate <= 0:
        raise ValueError("rate must be positive")
    rclpy.init(args=[])
    node = Node("lwd_replay", namespace=namespace)
    sent = 0
    try:
        with AnyReader([Path(bag)]) as reader:
            pubs = {c.topic: node.create_publisher(get_message(c.msgtype), c.topic.lstrip("/"), RELIABLE_QOS)
                    for c in reader.connections}
            # a listener's subscriptions are discovered one topic at a time: start once some are matched and the
            # matched set has held still for a moment (or at wait_s)
            end = time.monotonic() + wait_s
            matched, still_since = 0, time.monotonic()
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.1)
                now_matched = sum(1 for p in pubs.values() if p.get_subscription_count())
                if now_matched != matched:
                    matched, still_since = now_matched, time.monotonic()
                elif matched and time.monotonic() - still_since >= 1.0:
                    break
            t0_bag = t0_wall = None
            for conn, t_ns, raw in reader.messages():
                if t0_bag is None:
                    t0_bag, t0_wall = t_ns, time.monotonic()
                delay = (t_ns - t0_bag) / 1e9 / rate - (time.monotonic() - t0_wall)
                if delay > 0:
                    time.sleep(delay)
                pubs[conn.topic].publish(bytes(raw))  # rclpy publishes serialized bytes as-is
                sent += 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return sent


def compare_policy(bag: Path, checkpoint: Path, samples: int = 4, seed: int = 0) -> dict:
    """Re-run a checkpoint on the recorded observations; report its first actions vs what was executed."""
    steps = read_episode(bag)
    policy = VLAPolicy.from_checkpoint(load_checkpoint(checkpoint), seed=seed)
    h = policy.cfg.horizon
    images = steps.views(policy.cfg.cameras)  # ValueError if the bag lacks a camera the policy sees
    errs, per_source = [], {}
    for k in range(0, max(1, len(steps) - h), max(1, h // 2)):
        obs = {"image": images[k], "qpos": steps.qpos[k], "instruction": steps.meta.instruction}
        pred = np.mean([policy.infer(obs) for _ in range(samples)], axis=0)
        idx = np.minimum(np.arange(k, k + h), len(steps) - 1)
        err = np.abs(pred - steps.actions[idx]).mean(axis=0)  # per joint
        errs.append(err)
        per_source.setdefault(int(steps.source[k]), []).append(float(err.mean()))
    errs = np.asarray(errs)
    return {
        "bag": str(bag), "policy": str(checkpoint), "policy_version": policy.version,
        "episode": steps.meta.to_dict(), "chunks_compared": len(errs),
        "mean_abs_error": float(errs.mean()),
        "mean_abs_error_per_joint": errs.mean(axis=0).round(4).tolist(),
        "mean_abs_error_by_source": {str(k): float(np.mean(v)) for k, v in per_source.items()},
    }
