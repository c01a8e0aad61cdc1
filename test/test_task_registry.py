"""One task registry: every default task list is derived from lwd.sim.tasks.default_tasks()."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lwd.sim.tasks import TASKS, default_tasks, get_task, task_names

ROOT = Path(__file__).resolve().parents[1]


def test_default_curriculum_is_todays() -> None:
    # benchmarks and the pretrained v0 were made on these two: new tasks are opt-in until the curriculum grows
    assert default_tasks() == ("pick_place", "restock3")
    assert all(TASKS[t].default for t in default_tasks())
    assert set(default_tasks()) <= set(task_names())
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")


def test_configs_and_cli_derive_from_the_registry() -> None:
    from lwd.app.bench import BenchConfig
    from lwd.app.bench_chunking import ChunkBenchConfig
    from lwd.app.demo import DemoConfig
    from lwd.cli import build_parser
    from lwd.rl.learner import LearnerConfig
    from lwd.rl.pretrain import PretrainConfig

    assert PretrainConfig().tasks == LearnerConfig().tasks == BenchConfig().tasks == default_tasks()
    assert ChunkBenchConfig(store=Path("x")).tasks == default_tasks()
    assert DemoConfig().pretrain_tasks == ",".join(default_tasks())
    assert DemoConfig().tasks == ",".join(t for t in default_tasks() if not get_task(t).long_horizon)
    p = build_parser()
    assert p.parse_args(["pretrain"]).tasks == ",".join(default_tasks())
    assert p.parse_args(["bench", "chunking", "--store", "x"]).tasks == ",".join(default_tasks())


def test_no_task_list_is_written_out_elsewhere() -> None:
    """The registry is the only place that names the default curriculum (tests aside)."""
    pattern = re.compile(r"""pick_place["']?\s*,\s*["']?restock3""")
    offenders = []
    for folder in ("src", "launch", "config"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml", ".yml") and path.name != "tasks.py":
                if pattern.search(path.read_text()):
                    offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"hard-coded task lists (use lwd.sim.tasks.default_tasks()): {offenders}"


def test_launch_files_default_to_the_registry() -> None:
    pytest.importorskip("launch_ros")
    for name in ("robot.launch.py", "fleet_sim.launch.py"):
        spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / "launch" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.ARGS["tasks"][0] == ",".join(default_tasks()), name


def test_registry_imports_without_mujoco() -> None:
    """Launch files, configs and the learner read the registry without loading MuJoCo (lwd.sim is lazy)."""
    code = "import sys; from lwd.sim.tasks import default_tasks; default_tasks(); assert 'mujoco' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
