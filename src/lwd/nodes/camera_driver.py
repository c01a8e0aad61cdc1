"""camera_driver: publishes each of its ``cameras`` on its own rgb8 topic (``camera/image_raw`` for the overview,
``<name>/image_raw`` for a wrist camera) from the sim mirror, or one camera from a V4L device or a video file (a
real robot runs one driver per physical camera).

A ``sim/state`` with NaN/inf or of the wrong size is rejected and counted (``/diagnostics``), never rendered.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray, String

from lwd.control.health import OK, WARN, Rejected, check_finite_vector
from lwd.nodes.common import RELIABLE_QOS, SENSOR_QOS, HealthPublisher, numpy_to_image, parse_json, run_node
from lwd.robot import camera_topic, check_cameras


class CameraDriver(Node):
    def __init__(self) -> None:
        super().__init__("camera_driver")
        self.backend = self.declare_parameter("backend", "sim").value
        rate = float(self.declare_parameter("rate_hz", 10.0).value)
        self.size = int(self.declare_parameter("image_size", 64).value)
        device = self.declare_parameter("device", "0").value
        self.frame_id = self.declare_parameter("frame_id", "camera").value
        self.cameras = check_cameras(self.declare_parameter("cameras", ["overview"]).value)
        if self.backend != "sim" and len(self.cameras) != 1:
            raise ValueError(f"the {self.backend} backend reads one device: one camera, not {list(self.cameras)} "
                             "(run one camera_driver per camera)")
        # the overview keeps the frame_id parameter; a wrist camera's frame is its name
        self.frame_ids = [self.frame_id if c == "overview" else c for c in self.cameras]
        self.pubs = [self.create_publisher(Image, camera_topic(c), SENSOR_QOS) for c in self.cameras]
        self.world = None
        self.cap = None
        self.state: np.ndarray | None = None
        self.frames = 0
        self.diag = HealthPublisher(self)
        self.diag.health.set_value("backend", self.backend)
        if self.backend == "sim":
            from lwd.sim.world import SimWorld

            self.world = SimWorld(image_size=self.size, render=True, cameras=self.cameras)
            self.world.reset("pick_place", 0)
            self.create_subscription(Float64MultiArray, "sim/state", self._on_state, SENSOR_QOS)
            self.create_subscription(String, "episode/event", self._on_event, RELIABLE_QOS)
        elif self.backend in ("v4l", "file"):
            import cv2

            src = int(device) if self.backend == "v4l" and str(device).isdigit() else str(device)
            self.cap = cv2.VideoCapture(src)
            if not self.cap.isOpened():
                raise RuntimeError(f"camera_driver: cannot open {self.backend} source {device!r}")
        else:
            raise ValueError(f"backend must be sim, v4l or file, got {self.backend!r}")
        self.create_timer(1.0 / rate, self._tick)
        self.get_logger().info(f"camera_driver up: backend={self.backend} cameras={list(self.cameras)} "
                               f"{self.size}x{self.size} @ {rate:.0f} Hz")

    def _on_state(self, msg: Float64MultiArray) -> None:
        try:
            n = len(msg.data)  # any scene's state (the store-scene tasks run on a second model)
            size = n if n in self.world.scene_state_sizes() else self.world.state_size
            self.state = check_finite_vector(msg.data, size, what="state")
        except Rejected as e:
            self.diag.reject(e.reason, f"sim/state: {e}")

    def _on_event(self, msg: String) -> None:
        try:
            ev = parse_json(msg)
            if ev.get("event") == "start":
                self.world.reset(str(ev["task"]), int(ev["seed"]))
                self.state = None
        except (ValueError, KeyError, TypeError) as e:
            self.diag.reject("bad_event", f"episode/event: {e}")

    def _grab(self) -> np.ndarray | None:
        if self.world is not None:
            if self.state is not None:
                try:
                    self.world.set_state(self.state)
                except ValueError as e:
                    self.diag.reject("bad_shape", f"sim/state: {e}")
                    return None
            return self.world.render()
        import cv2

        ok, frame = self.cap.read()
        if not ok and self.backend == "file":
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        if not ok:
            self.diag.health.count("read_failures")
            self.diag.health.set_status(WARN, "camera read failed")
            self.get_logger().warning("camera read failed", throttle_duration_sec=5.0)
            return None
        self.diag.health.set_status(OK, "ok")
        frame = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _tick(self) -> None:
        img = self._grab()
        if img is not None:
            stamp = self.get_clock().now().to_msg()  # one stamp: the views are of one instant
            s = img.shape[0]
            for k, (pub, frame_id) in enumerate(zip(self.pubs, self.frame_ids, strict=True)):
                pub.publish(numpy_to_image(img[:, k * s:(k + 1) * s], stamp, frame_id))
            self.frames += 1
            self.diag.health.set_value("frames", self.frames)

    def close(self) -> None:
        if self.world is not None:
            self.world.close()
        if self.cap is not None:
            self.cap.release()


def main(args=None) -> int:
    return run_node(CameraDriver, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
