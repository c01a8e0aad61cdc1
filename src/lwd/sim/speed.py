"""In-process simulation speed per task: ``python -m lwd.sim.speed [--tasks a,b] [--episodes N]``.

For each task, zero-noise scripted-expert episodes are run without rendering. Two rates are reported per task:

* ``physics``: the episode's recorded actions replayed with ``SimWorld.apply`` alone (the simulator's own cost);
* ``with_expert``: the expert's IK and decisions included (what demo collection costs).

Rates are control steps per wall second (one control step = ``CONTROL_DT`` = 0.1 s of simulated time) and the
real-time factor (simulated seconds per wall second). The target (issue 7) is >= 10x real time per robot.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

__all__ = ["measure", "main"]


def measure(task: str, episodes: int = 3, seed0: int = 0) -> dict[str, float]:
    """Steps/s and real-time factors of ``task`` over ``episodes`` expert episodes (no rendering)."""
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.tasks import get_task
    from lwd.sim.world import CONTROL_DT, SimWorld

    spec = get_task(task)
    n_limit = round(spec.time_limit_s / CONTROL_DT)
    steps = 0
    t_expert = 0.0
    t_physics = 0.0
    with SimWorld(render=False) as world:
        for i in range(episodes):
            world.reset(task, seed0 + i)
            expert = ScriptedExpert(world)
            actions = []
            t0 = time.perf_counter()
            for _ in range(n_limit):
                a = expert.act()
                world.apply(a)
                actions.append(a)
                if world.success():
                    break
            t_expert += time.perf_counter() - t0
            world.reset(task, seed0 + i)
            t0 = time.perf_counter()
            for a in actions:
                world.apply(a)
            t_physics += time.perf_counter() - t0
            steps += len(actions)
    phys = steps / max(t_physics, 1e-9)
    full = steps / max(t_expert, 1e-9)
    return {"task": task, "steps": steps, "physics_steps_per_s": phys, "physics_x_realtime": phys * CONTROL_DT,
            "with_expert_steps_per_s": full, "with_expert_x_realtime": full * CONTROL_DT}


def main(argv: list[str] | None = None) -> int:
    from lwd.sim.tasks import TASKS

    p = argparse.ArgumentParser(prog="python -m lwd.sim.speed", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS), help="comma list (default: every registered task)")
    p.add_argument("--episodes", type=int, default=3)
    a = p.parse_args(argv)
    print(f"{'task':<12} {'steps':>6} {'physics steps/s':>16} {'x real time':>12} {'+expert steps/s':>16} "
          f"{'x real time':>12}")
    rows = [measure(t, a.episodes) for t in a.tasks.split(",")]
    for r in rows:
        print(f"{r['task']:<12} {r['steps']:>6} {r['physics_steps_per_s']:>16.0f} {r['physics_x_realtime']:>11.0f}x "
              f"{r['with_expert_steps_per_s']:>16.0f} {r['with_expert_x_realtime']:>11.0f}x")
    worst = min(float(np.min([r["physics_x_realtime"] for r in rows])), 1e9)
    print(f"slowest task: {worst:.0f}x real time (physics only; target >= 10x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
