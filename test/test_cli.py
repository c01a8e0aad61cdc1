"""The `lwd` CLI on the core: info on a store, clear errors on bad input."""

import json

from lwd.app.demo import summarize
from lwd.cli import main


def test_info_reports_store(tiny_store, capsys):
    assert main(["info", "--store", str(tiny_store)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 4 and info["by_source"] == {"demo": 4}
    assert [p["version"] for p in info["policies"]] == [0] and info["policies"][0]["algo"] == "pretrain"


def test_clear_errors(tiny_store, tmp_path, capsys):
    assert main(["pretrain", "--store", str(tiny_store)]) == 2  # refuses to overwrite v0
    assert "already has checkpoints" in capsys.readouterr().err
    assert main(["info", "--store", str(tmp_path / "missing")]) == 2


def test_pretrain_flags_reach_its_config(tmp_path, monkeypatch):
    import lwd.rl.pretrain as pre

    seen = {}

    def fake(store, cfg):
        seen["cfg"] = cfg
        raise FileExistsError("stop here")

    monkeypatch.setattr(pre, "pretrain", fake)
    assert main(["pretrain", "--store", str(tmp_path), "--steps", "36000", "--threads", "2"]) == 2
    assert seen["cfg"].steps == 36000 and seen["cfg"].threads == 2


class _Rec:
    def __init__(self, robot, t, success, interventions, version, task="pick_place"):
        self.robot, self.start_ns, self.success, self.num_interventions = robot, t, success, interventions
        self.policy_versions, self.task = [version], task


def test_summarize_groups_rounds_per_robot():
    recs = [_Rec("robot0", 1, True, 0, 0), _Rec("robot0", 2, False, 2, 0), _Rec("robot1", 1, True, 1, 0),
            _Rec("robot1", 2, True, 0, 0), _Rec("robot0", 3, True, 0, 1), _Rec("robot1", 3, False, 1, 1)]
    rounds = summarize(recs, robots=2, episodes_per_round=2)
    assert [r["episodes"] for r in rounds] == [4, 2]
    assert rounds[0]["success_rate"] == 0.75 and rounds[0]["autonomous_success_rate"] == 0.5
    assert rounds[0]["interventions_per_episode"] == 0.75 and rounds[0]["intervention_rate"] == 0.5
    assert rounds[1]["policy_versions"] == {"robot0": [1], "robot1": [1]}


def test_summarize_groups_asynchronous_episodes_by_the_version_they_started_on():
    recs = [_Rec("robot0", 1, True, 0, 0), _Rec("robot0", 2, False, 2, 0), _Rec("robot0", 3, True, 0, 0),
            _Rec("robot1", 1, True, 1, 0), _Rec("robot1", 2, True, 0, 2), _Rec("robot0", 4, False, 1, 2)]
    recs[2].policy_versions = [0, 2]  # hot-swapped mid-episode: counts for the version it started on
    rounds = summarize(recs, robots=2, episodes_per_round=2, by_version=True)
    assert [(r["round"], r["episodes"]) for r in rounds] == [(0, 4), (2, 2)]
    assert rounds[0]["success_rate"] == 0.75 and rounds[1]["autonomous_success_rate"] == 0.5


def test_learner_log_counts_every_update_of_a_round(tmp_path):
    """The demo's learner rows: a round's background updates (made while the robots work) count toward its rate,
    not only the online remainder (an asynchronous round that the robots bound has none)."""
    from lwd.app.demo import learner_log

    rows = [{"time": 0.0, "phase": "offline", "updates": 30, "perf/train_s": 3.0},
            {"time": 10.0, "phase": "background", "updates": 80, "perf/train_s": 2.0},
            {"time": 20.0, "phase": "gate", "updates": 80, "version": 0, "gate/accepted": 1.0},
            {"time": 30.0, "phase": "background", "updates": 130, "perf/train_s": 5.0},
            {"time": 40.0, "phase": "online", "updates": 150, "perf/train_s": 1.0},
            {"time": 50.0, "phase": "gate", "updates": 150, "version": 1, "gate/accepted": 0.0}]
    (tmp_path / "learner").mkdir()
    (tmp_path / "learner" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = learner_log(tmp_path)
    assert [(r["version_before"], r["accepted"], r["updates"], r["round_s"], r["updates_per_s"]) for r in got] == [
        (0, True, 80, 20.0, 16.0), (1, False, 70, 30.0, 11.67)]
