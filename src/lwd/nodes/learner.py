"""learner: the fleet's one learner. Polls the experience store, updates the policy (lwd.rl.learner), and
announces each new checkpoint on ``/fleet/policy`` (transient-local: late-joining robots get the latest)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import String

from lwd.config import from_params, param_defaults
from lwd.nodes.common import FLEET_POLICY_TOPIC, LATCHED_QOS, LEARNER_STATUS_TOPIC, run_node
from lwd.rl.learner import Learner, LearnerConfig


class LearnerNode(Node):
    def __init__(self) -> None:
        super().__init__("learner")
        store = Path(self.declare_parameter("store", "lwd_store").value).expanduser()
        self.poll_s = float(self.declare_parameter("poll_s", 2.0).value)
        # Every LearnerConfig field is a parameter with the dataclass default (one source of defaults).
        values = {name: self.declare_parameter(name, default).value
                  for name, default in param_defaults(LearnerConfig).items()}
        cfg = from_params(LearnerConfig, values)
        self.pub = self.create_publisher(String, FLEET_POLICY_TOPIC, LATCHED_QOS)
        self.status_pub = self.create_publisher(String, LEARNER_STATUS_TOPIC, LATCHED_QOS)
        self.learner = Learner(store, cfg)
        self._announce()
        self._publish_status()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="learner", daemon=True)
        self.thread.start()
        self.get_logger().info(f"learner up: algo={cfg.algo} store={store} serving v{self.learner.version}")

    def _announce(self) -> None:
        note = self.learner.announcement()
        self.pub.publish(String(data=json.dumps(note)))
        self.get_logger().info(f"announced policy v{note['version']} ({note['sha256'][:12]})")

    def _publish_status(self, error: str | None = None) -> None:
        status = self.learner.status()
        if error:
            status["error"] = error
        self.status_pub.publish(String(data=json.dumps(status)))

    def _loop(self) -> None:
        delay = self.poll_s
        while not self.stop.wait(delay):
            rounds = self.learner.rounds_done
            try:
                version = self.learner.poll()
            except Exception as e:  # noqa: BLE001 - log, keep serving the current policy, retry next poll
                self.get_logger().error(f"learner update failed: {type(e).__name__}: {e}")
                self._publish_status(error=f"{type(e).__name__}: {e}")  # visible to the fleet and operators
                delay = self.poll_s
                continue
            delay = self.learner.poll_delay(self.poll_s)
            if version is not None:
                self._announce()
            if self.learner.rounds_done != rounds:
                # After every round, published or rejected by the gate: synchronous fleets start the next round.
                self._publish_status()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5.0)
        if not self.thread.is_alive():  # a poll still running owns the learner: leave its writer alone
            self.learner.close()


def main(args=None) -> int:
    return run_node(LearnerNode, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
