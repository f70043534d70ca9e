"""The model registry on real TrainFlow runs: tags on a @project branch, the audit log, model loading, the CLI."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from metaflow import Run, Runner, namespace
from support import FlowResult, quick_gates

from steps.modeling import models
from steps.registry import registry as reg, store
from steps.registry.registry import Registry, RegistryError
from steps.registry.store import EventStore
from steps.scoring.resolve import resolve_model

BRANCH_NAME = "registry_test"  # what `train_flow.py --branch` is given
BRANCH = "test.registry_test"  # the project branch Metaflow records for it
SERVING = "serving"  # an exclusive tag outside the registry's roles, moved with ``move_tag``
UNREACHABLE_AUC = 0.9999


def run_on_branch(root: Path, workspace: Path, configs: dict[str, Path], branch: str, **params: Any) -> FlowResult:
    """Run TrainFlow with ``--branch <branch>`` (a top-level option) from the test workspace."""
    runner = Runner(str(root / "flows" / "train_flow.py"), show_output=False, cwd=str(workspace), branch=branch,
                    config=[(k, str(v)) for k, v in configs.items()])
    with runner.run(**params) as result:
        return FlowResult(result.status, result.run, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def branch_runs(root: Path, workspace: Path, tiny_data: Path, tiny_configs: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Three successful TrainFlow runs on the tiny data (one logistic-regression candidate each), on the registry
    test branch, oldest first.

    Their gates are the shipped ones with a hold-out AUC of at least 0.9999 (the point estimate) required, which no
    model of the tiny data reaches: every run's recorded verdict is a known failure, whatever the machine's load does
    to the latency checks (the tests impose the outcomes they need through the ``gates`` fixture). Every suite
    runs, on small samples (``quick_gates``): the registry reads verdicts, it does not judge them.
    """
    gates = quick_gates(yaml.safe_load((root / "config" / "gates.yaml").read_text()))
    gates["performance"]["thresholds"]["roc_auc"] = {"min": UNREACHABLE_AUC, "bound": "point"}
    path = tmp_path_factory.mktemp("registry-gates") / "gates.yaml"
    path.write_text(yaml.safe_dump(gates))
    train = yaml.safe_load(tiny_configs["train"].read_text())  # one candidate: any model will do for the registry
    train["candidates"] = [c for c in train["candidates"] if c["type"] == "logistic_regression"]
    (path.parent / "train.yaml").write_text(yaml.safe_dump(train))
    configs = {**tiny_configs, "gates": path, "train": path.parent / "train.yaml"}
    runs = []
    for _ in range(3):
        result = run_on_branch(root, workspace, configs, BRANCH_NAME, data=str(tiny_data))
        assert result.status == "successful", result.stderr[-4000:]
        runs.append(result.run)
    return runs


@pytest.fixture
def ids(branch_runs: list[Any]) -> list[str]:
    """The three run ids, oldest first."""
    return [r.id for r in branch_runs]


def _reset_tags(branch_runs: list[Any]) -> None:
    """Remove every registry tag from the branch runs."""
    registry = Registry(branch=BRANCH)
    for run in branch_runs:
        registry.run(run.id).remove_tags([reg.CHAMPION, reg.CANDIDATE, reg.ARCHIVED, SERVING])


@pytest.fixture
def registry(branch_runs: list[Any], tmp_path: Path) -> Registry:
    """A registry on the test branch with no registry tags set and an empty audit log of its own."""
    _reset_tags(branch_runs)
    return Registry(branch=BRANCH, store=EventStore(tmp_path / "events"))


@pytest.fixture
def gates(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Per-run gate outcomes to impose (run id -> passed); runs not listed keep their real ``gates_passed``."""
    imposed: dict[str, bool] = {}
    real = reg.gates_passed
    monkeypatch.setattr(reg, "gates_passed", lambda run: imposed.get(run.id, real(run)))
    return imposed


def _champion_ids(registry: Registry) -> list[str]:
    """Ids of every successful run carrying the champion tag."""
    return [r.id for r in registry.runs(reg.CHAMPION)]


class _Data(dict):
    """A stand-in for ``Run.data``: ``name in data`` and ``data.name``."""

    __getattr__ = dict.__getitem__


def _fake_run(run_id: str = "1", **artifacts: Any) -> SimpleNamespace:
    """A stand-in for a successful champion Run with the given artifacts (as ``data`` and as its end task's)."""
    return SimpleNamespace(id=run_id, pathspec=f"TrainFlow/{run_id}", successful=True,
                           user_tags=frozenset({"champion"}), data=_Data(artifacts),
                           end_task={k: SimpleNamespace(data=v) for k, v in artifacts.items()})


# -- scope and reading ---------------------------------------------------------------------------------------------

def test_branch_spellings_match_metaflow(branch_runs):
    for run in branch_runs:
        assert {"project:tabular_mlops", f"project_branch:{BRANCH}"} <= run.system_tags
    assert reg.project_branch(BRANCH_NAME) == BRANCH
    assert reg.project_branch(production=True) == "prod"
    assert reg.project_branch("x", production=True) == "prod.x"
    assert reg.project_branch(user="alice") == "user.alice"
    assert Registry().branch == f"user.{reg.current_user()}"


def test_runs_are_the_branch_runs_newest_first(registry, ids):
    assert [r.id for r in registry.runs()] == ids[::-1]
    assert registry.runs(reg.CHAMPION) == [] and registry.champion() is None
    assert Registry(branch="test.no_such_branch").runs() == []
    assert Registry(flow="NoSuchFlow", branch=BRANCH).runs() == []


def test_runs_of_other_branches_or_unknown_ids_are_refused(ids):
    with pytest.raises(RegistryError, match=f"is on branch '{BRANCH}', not 'test.other'"):
        Registry(branch="test.other").run(ids[0])
    with pytest.raises(RegistryError, match="not found"):
        Registry(branch=BRANCH).run("123")


def test_gates_passed_reads_the_artifact_and_missing_counts_as_failed(branch_runs):
    assert reg.gates_passed(_fake_run(gates_passed=True)) is True
    assert reg.gates_passed(_fake_run(gates_passed=False)) is False
    assert reg.gates_passed(_fake_run()) is False  # an older run without the artifact
    # a real run whose verdict is known by construction: its gates demand an AUC no tiny-data model reaches
    run = branch_runs[0]
    auc = next(g for g in run["judge"].task.data.gate_results if g["name"] == "roc_auc")
    assert auc["actual"] < UNREACHABLE_AUC and not auc["passed"]
    assert reg.gates_passed(run) is False


# -- promotion -------------------------------------------------------------------------------------------------

def test_promotion_of_a_run_that_failed_its_gates_is_refused(registry, ids, gates):
    gates[ids[0]] = False
    with pytest.raises(RegistryError, match="did not pass its gates"):
        registry.promote(ids[0], reason="looks fine")
    with pytest.raises(RegistryError, match="needs a non-empty reason"):
        registry.promote(ids[0], reason="  ", force=True)
    assert registry.champion() is None and registry.history() == []


def test_promote_moves_the_champion_tag_and_archives_the_previous_one(registry, ids, gates):
    gates.update({ids[0]: True, ids[1]: True})
    first = registry.promote(ids[0], reason="first model", note="alice")
    registry.tag_candidate(ids[1])
    assert [r.id for r in registry.candidates()] == [ids[1]]

    second = registry.promote(ids[1], reason="better auc", note="for bob", gate_summary={"failed": []})

    assert _champion_ids(registry) == [ids[1]] and registry.champion().id == ids[1]
    assert [r.id for r in registry.archived()] == [ids[0]]
    assert registry.candidates() == [] and reg.CANDIDATE in registry.run(ids[1]).user_tags  # the tag stays
    assert (first["kind"], first["from"], first["to"], first["forced"]) == ("promote", None, ids[0], False)
    assert (second["from"], second["to"], second["note"], second["gate_summary"]) == (ids[0], ids[1], "for bob",
                                                                                       {"failed": []})
    assert first["who"] == second["who"] == reg.current_user()  # the actor comes from the environment, not a flag
    assert registry.show()["problems"] == []
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(ids[1], reason="again")


def test_forced_promotion_is_recorded_as_forced(registry, ids, gates):
    gates[ids[2]] = False
    event = registry.promote(ids[2], reason="incident 42: previous model broken", force=True, note="carol")
    assert (event["kind"], event["forced"], event["note"]) == ("forced_promote", True, "carol")
    assert registry.history() == [event]
    state = registry.show()
    assert state["champion"]["run_id"] == ids[2] and state["problems"] == []


def test_register_from_a_run_tags_candidate_and_promotes_only_when_passed(registry, branch_runs, ids):
    assert registry.register(ids[1], passed=False, gate_summary={"failed": ["roc_auc"]}) is None
    assert [r.id for r in registry.candidates()] == [ids[1]] and registry.champion() is None
    assert registry.champion_for_comparison() is None

    event = registry.register(ids[2], passed=True, gate_summary={"failed": []}, note="trainflow")
    assert (event["kind"], event["from"], event["to"], event["forced"]) == ("promote", None, ids[2], False)
    assert _champion_ids(registry) == [ids[2]] and registry.history() == [event]
    run_id, model, blob = registry.champion_for_comparison()
    assert run_id == ids[2] and blob == branch_runs[2].data.model_blob and hasattr(model, "predict_proba")


def test_move_tag_keeps_one_holder_and_records_each_move(registry, ids, gates):
    gates[ids[2]] = True
    promoted = registry.promote(ids[2], reason="champion")
    first = registry.move_tag(ids[0], SERVING, "serve", "first student", note="gina", gate_summary={"failed": []})
    second = registry.move_tag(ids[1], SERVING, "serve", "better student")

    assert [r.id for r in registry.runs(SERVING)] == [ids[1]]
    assert (first["kind"], first["from"], first["to"], first["note"], first["gate_summary"], first["forced"]) == (
        "serve", None, ids[0], "gina", {"failed": []}, False)
    assert (second["from"], second["to"], second["reason"]) == (ids[0], ids[1], "better student")
    assert registry.history() == [promoted, first, second]
    # serve events do not count as champion moves: no problem reported, and no rollback to a serving run
    assert _champion_ids(registry) == [ids[2]] and registry.show()["problems"] == []
    with pytest.raises(RegistryError, match="never champion"):
        registry.rollback(to=ids[1])
    for tag, kind in ((reg.CHAMPION, "serve"), (SERVING, "promote")):
        with pytest.raises(RegistryError, match="belong to the champion"):
            registry.move_tag(ids[0], tag, kind, "sneaky")
    with pytest.raises(RegistryError, match="not found"):
        registry.move_tag("123", SERVING, "serve", "no such run")
    assert registry.history() == [promoted, first, second] and _champion_ids(registry) == [ids[2]]


# -- rollback and the audit log --------------------------------------------------------------------------------

def test_rollback_restores_the_previous_champions_in_turn(registry, ids, gates):
    gates.update(dict.fromkeys(ids, True))
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    for run_id in ids:
        registry.promote(run_id, reason=f"promote {run_id}")

    back = registry.rollback(reason="regression in prod", note="dave")
    assert (back["kind"], back["from"], back["to"]) == ("rollback", ids[2], ids[1])
    assert _champion_ids(registry) == [ids[1]]
    assert {r.id for r in registry.archived()} == {ids[0], ids[2]}

    registry.rollback()
    assert _champion_ids(registry) == [ids[0]]
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    assert registry.show()["problems"] == []
    assert [r.id for r in registry.runs()] == ids[::-1]  # still newest first after all those tag changes


def test_rollback_to_a_named_run_must_be_a_former_champion(registry, ids, gates):
    gates.update(dict.fromkeys(ids, True))
    registry.promote(ids[0], reason="a")
    with pytest.raises(RegistryError, match="never champion"):
        registry.rollback(to=ids[1])
    registry.promote(ids[1], reason="b")
    registry.promote(ids[2], reason="c")
    event = registry.rollback(to=ids[0], reason="back to the first")
    assert (event["from"], event["to"]) == (ids[2], ids[0]) and _champion_ids(registry) == [ids[0]]


def test_audit_log_is_one_file_per_event_in_order(registry, ids, gates, tmp_path):
    gates.update(dict.fromkeys(ids, True))
    registry.promote(ids[0], reason="first")
    registry.promote(ids[1], reason="second", note="erin")
    registry.rollback(reason="bad calibration", note="frank")

    events = registry.history()
    assert [(e["kind"], e["from"], e["to"], e["reason"]) for e in events] == [
        ("promote", None, ids[0], "first"), ("promote", ids[0], ids[1], "second"),
        ("rollback", ids[1], ids[0], "bad calibration")]
    assert [e["who"] for e in events] == [reg.current_user()] * 3 and [e["note"] for e in events] == [None, "erin",
                                                                                                       "frank"]
    assert [e["seq"] for e in events] == [1, 2, 3] and {e["aws_identity"] for e in events} == {None}  # local
    whens = [datetime.fromisoformat(e["when"]) for e in events]
    assert whens == sorted(whens) and all(w.utcoffset().total_seconds() == 0 for w in whens)
    assert all(set(e) == {"event_id", "seq", "kind", "tag", "who", "aws_identity", "note", "when", "flow", "project",
                          "branch", "dataset", "from", "to", "reason", "gate_summary", "forced"} for e in events)
    assert {(e["flow"], e["project"], e["branch"], e["dataset"]) for e in events} == {
        ("TrainFlow", "tabular_mlops", BRANCH, "card_transactions")}

    files = sorted((tmp_path / "events").iterdir())
    assert [f.name for f in files] == ["00000001.json", "00000002.json", "00000003.json"]  # numbered, created once
    assert [json.loads(f.read_text()) for f in files] == events


def test_event_names_sort_chronologically_within_one_second():
    base = 1_700_000_000 * 1_000_000_000
    stamps = [store._stamps(base + ns)[0] for ns in (1, 2, 10, 999, 1_000, 999_999_999)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    ticks = [store._now_ns() for _ in range(1000)]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
    assert store._stamps(base + 123_456_789)[1] == "2023-11-14T22:13:20.123456+00:00"


def test_default_audit_log_lives_under_the_local_datastore(workspace):
    location = Path(Registry(branch=BRANCH).store.location)
    expected = (workspace / ".metaflow" / "_registry" / "tabular_mlops" / BRANCH / "TrainFlow" / "card_transactions"
                / "events")  # one audit log per dataset
    assert location.resolve() == expected.resolve()


# -- show and models -------------------------------------------------------------------------------------------

def test_show_reports_two_champions_and_a_hand_tagged_one(registry, ids, gates):
    gates.update(dict.fromkeys(ids, True))
    registry.promote(ids[0], reason="first")
    registry.run(ids[1]).add_tag(reg.CHAMPION)  # by hand, outside the registry

    problems = registry.show()["problems"]
    assert any("2 runs carry the champion tag" in p for p in problems)
    assert any(ids[1] in p and "no promotion event" in p for p in problems)


def test_show_reports_a_champion_that_failed_its_gates_without_a_forced_promotion(registry, ids, gates):
    gates[ids[0]] = False
    registry.run(ids[0]).add_tag(reg.CHAMPION)
    problems = registry.show()["problems"]
    assert any("failed its gates and has no forced promotion event" in p for p in problems)


def test_champion_problems_include_a_blob_that_does_not_match_its_fingerprint(branch_runs):
    blob = branch_runs[0].data.model_blob
    tampered = _fake_run(model_blob=blob + b"x", model_fingerprint=models.fingerprint(blob), gates_passed=True)
    event = {"to": "1", "forced": False}
    assert any("does not hash to model_fingerprint" in p for p in reg._champion_problems(tampered, [event]))
    intact = _fake_run(model_blob=blob, model_fingerprint=models.fingerprint(blob), gates_passed=True)
    assert reg._champion_problems(intact, [event]) == []
    not_done = SimpleNamespace(id="2", successful=False)
    assert reg._champion_problems(not_done, []) == ["champion 2 did not finish successfully"]


def test_models_load_only_when_the_fingerprint_matches(registry, branch_runs, ids, gates):
    run = branch_runs[0]
    with pytest.raises(models.FingerprintMismatch, match="refusing to load"):
        reg.verified_model(run.data.model_blob, "0" * 64)
    wrong = _fake_run(model_blob=run.data.model_blob, model_fingerprint="0" * 64)
    with pytest.raises(models.FingerprintMismatch, match="run TrainFlow/1: model fingerprint mismatch"):
        reg.load_model(wrong)
    with pytest.raises(RegistryError, match="no champion"):
        registry.load_champion_model()

    gates[ids[0]] = True
    registry.promote(ids[0], reason="first")
    champion, same = registry.load_champion_model(), registry.load_model(ids[0])
    assert type(champion).__name__ == type(same).__name__ == "Pipeline" and hasattr(champion, "predict_proba")


# -- command line ----------------------------------------------------------------------------------------------

def _cli(root: Path, workspace: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m steps.registry --branch registry_test ARGS`` from the test workspace."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "steps.registry", "--branch", BRANCH_NAME, *args], cwd=workspace,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_promote_show_history_rollback(root, workspace, branch_runs, ids):
    _reset_tags(branch_runs)
    shutil.rmtree(Path(Registry(branch=BRANCH).store.location), ignore_errors=True)

    for run_id, why in ((ids[0], "first"), (ids[1], "second")):
        done = _cli(root, workspace, "promote", run_id, "--force", "--reason", why)
        assert done.returncode == 0, done.stderr
    state = json.loads(_cli(root, workspace, "--json", "show").stdout)
    assert state["branch"] == BRANCH and state["champion"]["run_id"] == ids[1]
    assert [r["run_id"] for r in state["archived"]] == [ids[0]] and state["problems"] == []

    history = _cli(root, workspace, "history")
    assert history.returncode == 0 and f"{ids[0]} -> {ids[1]}" in history.stdout
    assert len(history.stdout.strip().splitlines()) == 2

    back = _cli(root, workspace, "rollback", "--force", "--reason", "bad model")  # force: in case its gates failed
    assert back.returncode == 0, back.stderr
    shown = _cli(root, workspace, "show").stdout
    assert f"champion:   {ids[0]}" in shown and "problems:   none" in shown
    events = json.loads(_cli(root, workspace, "history", "--json").stdout)
    assert [(e["from"], e["to"]) for e in events] == [(None, ids[0]), (ids[0], ids[1]), (ids[1], ids[0])]
    assert events[-1]["kind"] == "rollback" and events[-1]["reason"] == "bad model"

    refused = _cli(root, workspace, "rollback", "--to", "123")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == ["error: run TrainFlow/123 not found"]


def test_rollback_to_a_run_that_failed_its_gates_needs_force_and_a_reason(registry, ids, gates):
    gates.update({ids[0]: True, ids[1]: True})
    registry.promote(ids[0], reason="a")
    registry.promote(ids[1], reason="b")
    gates[ids[0]] = False  # e.g. the gates were re-run with stricter thresholds
    with pytest.raises(RegistryError, match="did not pass its gates.*refusing to roll back to it"):
        registry.rollback(to=ids[0], reason="b is broken")
    with pytest.raises(RegistryError, match="needs a non-empty reason"):
        registry.rollback(force=True)  # the default reason ('rollback') is no reason
    assert _champion_ids(registry) == [ids[1]] and len(registry.history()) == 2
    event = registry.rollback(to=ids[0], reason="incident 7: b scores NaN", force=True)
    assert (event["kind"], event["to"], event["forced"]) == ("rollback", ids[0], True)
    assert _champion_ids(registry) == [ids[0]] and registry.show()["problems"] == []


def test_show_exits_non_zero_on_problems_and_survives_a_closed_pipe(root, workspace, branch_runs, ids):
    _reset_tags(branch_runs)
    shutil.rmtree(Path(Registry(branch=BRANCH).store.location), ignore_errors=True)
    assert _cli(root, workspace, "show").returncode == 0
    Registry(branch=BRANCH).run(ids[1]).add_tag(reg.CHAMPION)  # by hand: no promotion event
    shown = _cli(root, workspace, "show")
    assert shown.returncode == 2 and "no promotion event in the audit log" in shown.stdout
    env = {**os.environ, "PYTHONPATH": str(root)}
    piped = subprocess.run(f"{sys.executable} -m steps.registry --branch {BRANCH_NAME} show | true",  # reader gone
                           shell=True, cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert piped.stderr == ""  # no BrokenPipeError, no "--- Logging error ---"
    _reset_tags(branch_runs)


@pytest.mark.parametrize("branch", ["prod", "production"])
def test_branch_prod_is_refused_with_the_way_to_production(root, workspace, branch):
    done = subprocess.run([sys.executable, "-m", "steps.registry", "--branch", branch, "show"], cwd=workspace,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"--branch {branch} would mean the test branch test.{branch}" in done.stderr
    assert "use --production" in done.stderr


def test_registry_help_explains_every_option(root, workspace):
    for args in ([], ["promote"], ["rollback"]):
        text = subprocess.run([sys.executable, "-m", "steps.registry", *args, "--help"], cwd=workspace,
                              env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                              timeout=120).stdout
        options = [line.split()[0] for line in text.splitlines() if line.startswith("  -")]
        assert options, text
        for line in text.split("options:")[1].split("\n  -")[1:]:
            assert "default" in line or line.startswith("h, --help"), line  # each option says its default


def _artifact_file(run: Any, name: str) -> Path:
    """The local datastore file that holds artifact ``name`` of the run's end step (content-addressed)."""
    stored = run.end_task[name]._object
    root = stored["location"].removeprefix(":root:")
    return Path(root) / run.parent.id / "data" / stored["sha"][:2] / stored["sha"]


def test_a_model_edited_in_the_datastore_is_refused_whatever_the_client_cache_holds(root, workspace, branch_runs,
                                                                                  ids):
    _reset_tags(branch_runs)
    shutil.rmtree(Path(Registry(branch=BRANCH).store.location), ignore_errors=True)
    Registry(branch=BRANCH).promote(ids[0], reason="tamper test", force=True)
    namespace(None)
    run = Run(f"TrainFlow/{ids[0]}")
    blob = run.data.model_blob  # now in the Client's cache, shared by every process of this user
    assert _cli(root, workspace, "show").returncode == 0
    path = _artifact_file(run, "model_blob")
    original = path.read_bytes()
    try:
        path.write_bytes(gzip.compress(pickle.dumps(blob[:-64] + bytes(64), protocol=4)))
        assert Run(f"TrainFlow/{ids[0]}").data.model_blob == blob  # the cache still serves the original bytes
        shown = _cli(root, workspace, "show")
        assert shown.returncode == 2 and "model_blob does not hash to model_fingerprint" in shown.stdout
        with pytest.raises(models.FingerprintMismatch, match=f"run TrainFlow/{ids[0]}"):
            resolve_model(ids[0], BRANCH, "tabular_mlops", force="tamper test")  # what ScoreFlow's start step calls
    finally:
        path.write_bytes(original)
        _reset_tags(branch_runs)


RACE = """
import random, sys, time
from steps.registry.registry import Registry
ids, seed = sys.argv[1].split(","), int(sys.argv[2])
rng = random.Random(seed)
registry = Registry(branch=sys.argv[3])
done = 0
for _ in range(3):
    time.sleep(rng.uniform(0, 0.2))
    try:
        if rng.random() < 0.6:
            registry.promote(rng.choice(ids), reason=f"racer {seed}", force=True)
        else:
            registry.rollback(reason=f"racer {seed}", force=True)
        done += 1
    except Exception as err:  # refused: already champion / nothing to roll back; the log decides
        assert "already the champion" in str(err) or "roll back" in str(err) or "never champion" in str(err), err
print(done)
"""


def test_racing_promotions_and_rollbacks_leave_one_champion_named_by_the_last_event(root, workspace, branch_runs,
                                                                                    ids):
    _reset_tags(branch_runs)
    shutil.rmtree(Path(Registry(branch=BRANCH).store.location), ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(root)}
    racers = [subprocess.Popen([sys.executable, "-c", RACE, ",".join(ids), str(seed), BRANCH], cwd=workspace,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for seed in range(6)]
    outputs = [racer.communicate(timeout=600) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err[-2000:] for _, err in outputs]
    landed = sum(int(out.strip()) for out, _ in outputs)
    registry = Registry(branch=BRANCH)
    events = registry.history()
    assert landed >= 1 and len(events) == landed  # every change that reported success is in the log, once
    assert [e["seq"] for e in events] == list(range(1, landed + 1))
    assert _champion_ids(registry) == [events[-1]["to"]]  # exactly one champion: the one the last event names
    for before, after in zip(events, events[1:], strict=False):
        assert after["from"] == before["to"]  # each change was decided on the log as it then was
    assert registry.show()["problems"] == []
    _reset_tags(branch_runs)
