"""One source of defaults: YAML keys are declared parameters; --quick never overrides explicit flags."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lwd.app.bench import QUICK, config_from_args
from lwd.config import from_params, param_defaults
from lwd.rl.learner import LearnerConfig
from lwd.sim.operator_config import OperatorConfig

ROOT = Path(__file__).resolve().parents[1]
NODES = ROOT / "src" / "lwd" / "nodes"


def _declared(node: str) -> set[str]:
    src = (NODES / f"{node}.py").read_text() + (NODES / "common.py").read_text()
    names = set(re.findall(r"declare_parameter\(\s*[\"'](\w+)[\"']", src))
    if node == "learner":
        names |= set(param_defaults(LearnerConfig))
    if node == "teleop":
        names |= set(param_defaults(OperatorConfig))
    return names


def _sections(path: Path) -> dict[str, dict]:
    data = yaml.safe_load(path.read_text())
    return {key.split("/")[-1]: (val or {}).get("ros__parameters", {}) for key, val in data.items()}


def test_every_yaml_key_is_a_declared_parameter():
    for path in (ROOT / "config").glob("*.yaml"):
        for node, params in _sections(path).items():
            declared = _declared(node)
            undeclared = set(params) - declared
            assert not undeclared, f"{path.name}: {node} does not declare {sorted(undeclared)}"


def test_learner_parameters_round_trip_through_ros_types():
    defaults = param_defaults(LearnerConfig)
    assert isinstance(defaults["tasks"], str) and isinstance(defaults["algo_overrides"], str)
    cfg = from_params(LearnerConfig, defaults)
    assert cfg == LearnerConfig()
    cfg = from_params(LearnerConfig, {"tasks": "pick_place", "algo_overrides": '{"beta": 3.0}', "gamma": 1})
    assert cfg.tasks == ("pick_place",) and cfg.algo_overrides == {"beta": 3.0} and cfg.gamma == 1.0


def test_quick_never_overrides_explicit_flags():
    assert config_from_args(True).rounds == QUICK["rounds"]
    assert config_from_args(True, rounds=5).rounds == 5  # `lwd bench learning --quick --rounds 5` runs 5
    assert config_from_args(False).rounds == 3 and config_from_args(False).eval_episodes >= 50
    assert config_from_args(True, algos=("bc",)).algos == ("bc",)
    # the whole VLA learns by default; --no-images (False) must survive, --images absent (None) keeps the default
    assert config_from_args(True, images=None).images and not config_from_args(True, images=False).images
