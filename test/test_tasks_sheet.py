"""`lwd tasks list` and `lwd tasks sheet` (docs/tasks.png)."""

from __future__ import annotations

from pathlib import Path

from lwd.app.tasks_sheet import shoot, task_rows, write_sheet
from lwd.cli import main
from lwd.sim.tasks import TASKS, default_tasks


def test_rows_cover_the_registry(capsys) -> None:
    rows = task_rows()
    assert [r["task"] for r in rows] == list(TASKS)
    assert [r["task"] for r in rows if r["default"]] == list(default_tasks())
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in TASKS)


def test_shot_and_sheet(tmp_path: Path) -> None:
    shot = shoot("unstock", seed=0, image_size=32, settle_steps=2)
    assert shot.success and shot.steps is not None
    assert shot.start.shape == shot.goal.shape == (32, 32, 3)
    assert not (shot.start == shot.goal).all()
    out = write_sheet(tmp_path / "tasks.png", scale=1, tasks=("unstock",))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_with_speed(capsys, monkeypatch) -> None:
    import lwd.sim.speed as speed

    monkeypatch.setattr(speed, "measure", lambda task: {"physics_steps_per_s": 250.0, "physics_x_realtime": 25.0})
    assert main(["tasks", "list", "--speed"]) == 0
    out = capsys.readouterr().out
    assert out.count("250 steps/s (25x real time)") == len(TASKS)
