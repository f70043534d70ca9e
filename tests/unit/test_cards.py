"""What the cards say and what their charts hold, from plain data (no flow run): the verdict banners, reported-only
checks apart from the gated ones, the note on an estimate outside its interval, and Vega-Lite charts that are valid
against the schema, JSON a browser parses (no NaN), and lay out every group or feature on its own row."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from steps.config.distill import DistillConfig
from steps.reporting import cards, charts, checks


def result(name: str, actual: float | None, passed: bool = True, gated: bool = True, suite: str = "performance",
           interval: list[float] | None = None, detail: str = "measured") -> dict[str, Any]:
    return {"suite": suite, "name": name, "metric": name, "threshold": ">= 0.6 (lower 95% bound)", "actual": actual,
            "interval": interval, "passed": passed, "detail": detail, "gated": gated}


RESULTS = [
    result("roc_auc", 0.81, interval=[0.78, 0.84]),
    result("calibration_error", 0.004, interval=[0.005, 0.011]),  # biased upward under resampling
    result("demographic_parity_difference[a×b]", None, gated=False, suite="fairness",
           detail="fewer than 2 groups large enough to compare; 1 of 25 groups gated"),
    result("review_rate", 0.02, gated=False, suite="review",
           detail="40 of 2000 scores in [0.4, 0.6]; no budget set (review.max_rate): reported, not gated"),
    result("significantly_better[roc_auc]", -0.01, passed=False, suite="champion", interval=[-0.03, 0.01],
           detail="challenger 0.81 vs champion 0.82"),
]


def text_of(components: list[Any]) -> str:
    """Everything the components would put in the card (their rendered JSON)."""
    return json.dumps([c.render() for c in components], ensure_ascii=False)


@pytest.mark.parametrize("value,shown", [(None, "-"), (0.81234, "0.8123"), (80618.7, "80,619"), (121.94, "121.9"),
                                         (9.42e-05, "9.42e-05"), (0.0, "0.0000"), (3000, "3,000"),
                                         (float("nan"), "n/a"), ("x", "x")])
def test_numbers_read_as_a_reviewer_reads_them(value: Any, shown: str) -> None:
    assert checks.fmt(value) == shown


def test_reported_only_checks_are_apart_and_never_read_as_pass() -> None:
    gated = checks.gated_rows(RESULTS)
    assert [row[2].replace(checks.BREAK, "") for row in gated] == ["roc_auc", "calibration_error",
                                                                   "significantly_better[roc_auc]"]
    assert [row[0] for row in gated] == ["PASS", "PASS", "FAIL"]
    reported = checks.reported_rows(RESULTS)
    assert [r[2] for r in reported] == ["-", "0.0200"]  # no value: "-", never "PASS" with None
    assert reported[0][3] == "fewer than 2 groups large enough to compare"
    assert reported[1][3] == "no budget set (review.max_rate): reported, not gated"
    assert "PASS" not in {cell for row in reported for cell in row}


def test_an_estimate_outside_its_interval_is_marked_and_explained() -> None:
    rows = {row[2]: row for row in checks.gated_rows(RESULTS)}
    assert rows["calibration_error"][4] == f"0.0040 {checks.OUTSIDE}" and rows["roc_auc"][4] == "0.8100"
    note = checks.outside_note(RESULTS)
    assert note is not None and note.startswith(f"{checks.OUTSIDE} calibration_error:")
    assert "biased upward under resampling" in note and "\n" not in note
    assert checks.outside_note(RESULTS[:1]) is None


def test_gates_banner_says_what_happens_to_the_run() -> None:
    failed = {"passed": False, "failed": ["champion/significantly_better[roc_auc]"]}
    text = text_of([cards.gates_verdict(RESULTS, failed, "123")])
    assert "Stays a candidate, champion unchanged:" in text and "1 of 3 gated checks failed" in text
    assert "champion/significantly_better[roc_auc]" in text and "Run 123 stays champion." in text
    passed = text_of([cards.gates_verdict(RESULTS[:2], {"passed": True, "failed": []}, "123")])
    assert "Will become champion:" in passed and "(2 of 2)" in passed and "it replaces run 123" in passed
    first = text_of([cards.gates_verdict(RESULTS[:2], {"passed": True, "failed": []}, None)])
    assert "the first champion of its dataset" in first


def _report(groups: int) -> dict[str, Any]:
    curve = {"roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]},
             "calibration": {"predicted": [0.01, 0.05], "observed": [0.012, 0.04]}}
    rows = [{"group": f"{i // 5}×region_{i % 5}", "rows": 400, "positives": 10, "selection_rate": 0.03,
             "tpr": 0.5, "fpr": 0.02, "auc": None if i == 3 else 0.8, "gated": i % 2 == 0} for i in range(groups)]
    return {"curves": {"challenger": curve}, "fairness": {"a×b": rows},
            "efficiency": {"p50_ms": 4.2, "rows_per_s": 80618.7}}


def test_gates_card_lists_every_check_and_the_details() -> None:
    summary = {"passed": False, "failed": ["champion/significantly_better[roc_auc]"]}
    text = text_of(cards.gates_card(RESULTS, summary, _report(25)))
    assert "Reported, not gated" in text and "why not gated" in text and "Why it failed" in text
    assert "Details of every check (5)" in text and "No champion yet" in text
    assert "detail" not in json.dumps([c.render()["columns"] for c in cards.gates_card(RESULTS, summary, _report(5))
                                       if c.render().get("type") == "table"])  # details go below the tables


def test_distill_banner_says_which_student_serves_or_why_none_does() -> None:
    cfg = DistillConfig(students=[{"name": "linear", "type": "linear"}])
    table = [{"name": "mlp", "reasons": ["cost_ratio 1.357 > 0.1"]}, {"name": "linear", "reasons": []}]
    assert "linear will serve:" in text_of([cards.serving_verdict("linear", RESULTS[:2], table, cfg)])
    failed = text_of([cards.serving_verdict("linear", RESULTS, table, cfg)])
    assert "linear will not serve:" in failed and "champion/significantly_better[roc_auc]" in failed
    none = text_of([cards.serving_verdict(None, None, table, cfg)])
    assert "No student serves from this run:" in none and "mlp: cost_ratio 1.357 &gt; 0.1" in none  # escaped HTML


def test_monitor_card_shows_the_daily_auc_with_its_interval() -> None:
    days = [f"2026-01-{d:02d}" for d in range(1, 9)]
    performance = [{"period": d, "rows": 2000, "positives": 30 if i else 5, "roc_auc": 0.85 - 0.01 * i,
                    "auc_interval": [0.8 - 0.01 * i, 0.9 - 0.01 * i] if i else None, "precision": 0.3, "recall": 0.2,
                    "groups": {"region": {"apac": {"roc_auc": 0.8}}}} for i, d in enumerate(days)]
    periods = [{"period": d, "rows": 2000, "signals": {"feature_drift": {"breach": False}},
                "measurements": [{"signal": "feature_drift", "statistic": "psi", "subject": f"f{k}", "value": 0.01,
                                  "breach": k == 0} for k in range(3)]} for d in days]
    active = [{"tier": "critical", "rule": "auc_drop", "since": days[-1]}]
    text = text_of(cards.monitor_card({"periods": periods, "performance": performance}, [], active,
                                      {"strategy": "hybrid", "reason": "auc_drop breached"},
                                      {"run": None, "status": "not started (launcher none)"}, ["region"], 0.86))
    assert "1 active alert:" in text and "critical auc_drop (since 2026-01-08)" in text
    assert "[0.7300, 0.8300]" in text and "-0.0800" in text  # the newest day: interval, and AUC vs the reference
    assert "No run started: not started (launcher none)." in text and "Started `None`" not in text


def layers(chart: dict[str, Any]) -> list[dict[str, Any]]:
    """Every layer of a chart, through concatenations and facets."""
    found = []
    for part in chart.get("hconcat", chart.get("concat", [chart.get("spec", chart)])):
        found += part.get("layer", [part])
    return found


def data(chart: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a chart's main data."""
    return chart["data"]["values"]


@pytest.mark.parametrize("groups", [5, 25])
def test_group_bars_give_every_group_one_row_and_write_na_for_a_missing_value(groups: int) -> None:
    report = _report(groups)["fairness"]["a×b"]
    chart = charts.group_bars(report, "a×b")
    bars, missing = layers(chart)
    assert bars["encoding"]["y"]["sort"] == [g["group"] for g in report]  # in the report's order, each once
    assert chart["spec"]["height"] == {"step": charts.ROW}  # the chart grows with the groups: labels never collide
    assert len(data(chart)) == groups * len(charts.GROUP_METRICS)
    faded = {r["group"] for r in data(chart) if r["gated"] == charts.NOT_GATED}
    assert faded == {g["group"] for g in report if not g["gated"]}
    assert [(r["group"], r["metric"]) for r in data(chart) if r["value"] is None] == [(report[3]["group"], "auc")]
    assert missing["mark"]["text"] == "n/a" and missing["transform"] == [{"filter": "datum.value === null"}]


def test_drift_heat_map_has_one_row_per_feature_and_outlines_breaches() -> None:
    days = [f"2026-02-{d:02d}" for d in range(1, 29)]
    periods = [{"period": d, "measurements": [{"signal": "feature_drift", "statistic": "psi", "subject": f"feature_{k}",
                                               "value": float(np.sin(k + j)) ** 2, "breach": (k + j) % 9 == 0}
                                              for k in range(40)]} for j, d in enumerate(days)]
    chart = charts.drift_heatmap(periods)
    cells, outlines = layers(chart)
    assert len(cells["encoding"]["y"]["sort"]) == 40 and chart["height"] == {"step": charts.ROW}
    assert cells["encoding"]["x"]["sort"] == days and len(cells["encoding"]["x"]["axis"]["values"]) <= 16
    assert len(data(chart)) == 40 * 28
    assert sum(r["breach"] for r in data(chart)) == sum((k + j) % 9 == 0 for k in range(40) for j in range(28))
    assert outlines["transform"] == [{"filter": "datum.breach"}] and outlines["mark"]["stroke"] == charts.RED


@pytest.mark.parametrize("attributes", [1, 2, 5])
def test_auc_by_group_wraps_panels_and_its_width_does_not_depend_on_the_names(attributes: int) -> None:
    names = [f"a_very_long_sensitive_attribute_name_{k}" * (k + 1) for k in range(attributes)]
    perf = [{"period": f"2026-01-0{d}", "roc_auc": 0.8,
             "groups": {n: {"group_with_a_name_longer_than_any_legend_has_room_for": {"roc_auc": 0.7}} for n in names}}
            for d in range(1, 4)]
    chart = charts.auc_by_group(perf, 0.8, names)
    columns = min(attributes, charts.PANELS_PER_ROW)
    assert chart["columns"] == columns and len(chart["concat"]) == attributes  # two per row, then the next row
    for panel, name in zip(chart["concat"], names, strict=True):
        assert panel["width"] * columns + charts.PANEL_FRAME * columns <= charts.WIDTH
        assert panel["title"]["limit"] == panel["width"] and name in panel["title"]["text"]
        color = layers(panel)[0]["encoding"]["color"]
        assert color["title"] is None and color["legend"]["labelLimit"] == charts.LEGEND_LABEL  # no name widens it


def test_quality_cost_names_models_and_runtimes_in_legends_and_the_rule_in_the_subtitle() -> None:
    points = [{"name": name, "runtime": rt, "auc_ratio": 1.0 - 0.001 * i, "cost_us_per_row": 1.2 + 0.001 * i}
              for i, (name, rt) in enumerate([(n, r) for n in ("teacher", "lgbm_small", "mlp", "linear")
                                              for r in ("native", "onnx", "quantized")])]
    chart = charts.quality_cost(points, 0.985, 0.2)
    marks = [layer["mark"]["type"] for layer in layers(chart)]
    assert marks == ["point", "rule", "rule"]  # nothing written next to the points, so nothing to overlap
    color = layers(chart)[0]["encoding"]["color"]["scale"]
    assert color["domain"] == ["teacher", "lgbm_small", "mlp", "linear"] and color["range"][0] == charts.RED
    assert charts.RED not in color["range"][1:]  # red is the teacher's alone
    assert layers(chart)[0]["encoding"]["shape"]["scale"]["domain"] == ["native", "onnx", "quantized"]
    assert chart["title"]["subtitle"] == "dashed: quality floor 0.985; dash-dot: cost ceiling 0.2 µs (onnx)"


def _every_chart() -> dict[str, dict[str, Any]]:
    """One of each chart, on small data with the awkward values real runs have (no AUC, no interval, NaN)."""
    report = _report(7)
    curves = {"challenger": {**report["curves"]["challenger"], "pr": {"recall": [0.0, 1.0], "precision": [1.0, 0.1]}}}
    days = [f"2026-01-{d:02d}" for d in range(1, 9)]
    perf = [{"period": d, "rows": 900, "positives": 9, "roc_auc": None if i == 2 else 0.8,
             "auc_interval": [0.7, 0.9] if i % 2 else None, "groups": {"region": {"apac": {"roc_auc": 0.8},
                                                                                   "emea": {"roc_auc": None}}}}
            for i, d in enumerate(days)]
    periods = [{"period": d, "measurements": [{"signal": "feature_drift", "statistic": "psi", "subject": "amount",
                                               "value": float("nan") if i == 0 else 0.1, "breach": i == 3}]}
               for i, d in enumerate(days)]
    points = [{"name": "teacher", "runtime": "native", "auc_ratio": 1.0, "cost_us_per_row": 3.0},
              {"name": "mlp", "runtime": "onnx", "auc_ratio": 0.99, "cost_us_per_row": 0.4}]
    rows = [{"period": d, "value": 0.1 * i, "baseline": None if i == 0 else 0.05, "threshold": 0.2, "breach": i > 5}
            for i, d in enumerate(days)]
    return {"roc_pr": charts.roc_pr(curves), "roc_calibration": charts.roc_calibration(report["curves"]),
            "group_bars": charts.group_bars(report["fairness"]["a×b"] + [{"group": "nan", "auc": float("nan")}], "a"),
            "drift_heatmap": charts.drift_heatmap(periods), "auc_interval": charts.auc_interval(perf, 0.82),
            "auc_by_group": charts.auc_by_group(perf, None, ["region"]),
            "quality_cost": charts.quality_cost(points, 0.98, 1.5), "series": charts.series(rows, "psi of amount"),
            "score_histogram": charts.score_histogram(np.linspace(0, 1, 500), (0.4, 0.6), 0.3)}


@pytest.fixture(scope="module")
def vega_lite() -> Any:
    """A validator of the Vega-Lite schema the cards' bundle renders (v6), as altair ships it."""
    from importlib.resources import files

    import jsonschema

    schema = json.loads((files("altair") / "vegalite/v6/schema/vega-lite-schema.json").read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.mark.parametrize("name", sorted(_every_chart()))
def test_every_chart_is_valid_vega_lite_and_plain_json(name: str, vega_lite: Any) -> None:
    import jsonschema

    chart = _every_chart()[name]
    error = jsonschema.exceptions.best_match(vega_lite.iter_errors(chart))
    assert error is None, f"{name}: {error.message} at {list(error.absolute_path)}"
    json.dumps(chart, allow_nan=False)  # a NaN is not JSON: the card's JSON.parse would fail and show nothing
    assert chart["$schema"] == charts.SCHEMA and chart["description"]


def test_a_chart_is_shown_by_a_notebook_as_vega_lite() -> None:
    chart = _every_chart()["series"]
    bundle = chart._repr_mimebundle_()
    assert bundle[charts.MIMETYPE] == dict(chart) and bundle["text/plain"] == "<chart: psi of amount>"


def manifest(quarantined: dict[int, dict[str, int]], shadow: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ScoreFlow manifest of two 1,000-row shards, with ``quarantined`` reasons per shard."""
    shards = [{"shard": i, "attempt": i, "rows_in": 1000, "rows_out": 1000 - sum(quarantined.get(i, {}).values()),
               "rows_quarantined": sum(quarantined.get(i, {}).values()), "reasons": quarantined.get(i, {}),
               "timings": {"read_validate_s": 0.1, "predict_s": 0.3, "write_s": 0.05, "total_s": 0.5}}
              for i in range(2)]
    out = sum(s["rows_out"] for s in shards)
    return {"partition": "dt=2026-01-15", "max_quarantine_rate": 0.01, "forced": None, "runtime": "onnx",
            "decision_threshold": 0.3, "decision_source": "model (fixed)", "review_band": [0.4, 0.6],
            "model": {"name": "lightgbm", "run": "TrainFlow/12", "fingerprint": "ab" * 32},
            "input": {"files": [{"path": "a.parquet"}], "rows": 2000}, "shadow": shadow, "shards": shards,
            "totals": {"rows_in": 2000, "rows_out": out, "rows_quarantined": 2000 - out,
                       "quarantine_rate": (2000 - out) / 2000}}


def test_score_card_says_what_was_written_by_which_model_and_why_rows_were_quarantined() -> None:
    card = cards.score_card(manifest({0: {"amount is null": 2, "hour above max 23": 1}, 1: {"hour above max 23": 3}}),
                            "/out/dt=2026-01-15/")
    text = text_of(card)
    assert "dt=2026-01-15 written:" in text and "1,994 of 2,000 rows scored, 6 quarantined (0.30%" in text
    assert "the run fails above 1.00%" in text and "/out/dt=2026-01-15/" in text
    assert "#b26a00" in text  # quarantined rows: the warning tone, not the all-clear
    assert "lightgbm (TrainFlow/12, sha256 abababababab)" in text and "score ≥ 0.3 (model (fixed))" in text
    tables = {tuple(t["columns"]): t["data"] for t in (c.render() for c in card) if t["type"] == "table"}
    reasons = tables[("rows", "of input", "reason")]
    assert [r[2] for r in reasons] == ["hour above max 23", "amount is null"]  # most frequent first, shards summed
    assert [r[0] for r in reasons] == ["4", "2"]
    shards = {"data": next(rows for columns, rows in tables.items() if columns[0] == "shard")}
    assert shards["data"][1][:5] == ["1", "1", "1,000", "997", "3"] and shards["data"][1][-1] == "2,000"
    assert "Shadow model" not in text
    assert ["forced", "no"] in tables[("", "")]


def test_score_card_says_who_forced_a_model_and_which_rules_it_broke() -> None:
    forced = {"reason": "hotfix", "by": "ana", "overrides": {"model": ["failed its gates"]}}
    text = text_of(cards.score_card({**manifest({}), "forced": forced}, "/out/dt=2026-01-15/"))
    assert "by ana: hotfix (rules broken: model: failed its gates)" in text and "#b26a00" in text


def test_score_card_of_a_clean_partition_with_a_shadow() -> None:
    shadow = {"run": "TrainFlow/13", "agreement_rate": 0.995, "mean_abs_diff": 0.0123}
    text = text_of(cards.score_card(manifest({}, shadow), "s3://b/p/dt=2026-01-15/"))
    assert "2,000 of 2,000 rows scored, 0 quarantined" in text and "#1e7e34" in text
    assert "Quarantined rows by reason" not in text
    assert "Shadow model" in text and "TrainFlow/13" in text and "99.50%" in text


def _candidate(name: str, **fit: Any) -> dict[str, Any]:
    return {"name": name, "type": "lightgbm", "metrics": dict.fromkeys(cards.METRIC_COLUMNS, 0.5), "fit_seconds": 1.5,
            "size_bytes": 2048, "fingerprint": "ab" * 32, **fit}


def test_training_card_says_where_each_candidate_was_trained_and_why_a_gpu_fit_fell_back() -> None:
    curves = {"roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}, "pr": {"recall": [0.0, 1.0], "precision": [1.0, 0.5]}}
    split = {part: {"rows": 10, "positives": 1, "time_min": None, "time_max": None}
             for part in ("train", "validation", "holdout")}
    summaries = [_candidate("gpu_ok", device="gpu", threads=4, device_fallback=None),
                 _candidate("fell_back", device="cpu", threads=4, device_fallback="LightGBMError: No OpenCL device"),
                 _candidate("older_run")]  # a run from before devices were recorded
    text = text_of(cards.training_card(summaries, {s["name"]: curves for s in summaries}, "gpu_ok", "roc_auc",
                                       {}, split))
    assert "gpu x4" in text and "cpu x4" in text
    (table,) = [c.render() for c in cards.training_card(summaries, {s["name"]: curves for s in summaries}, "gpu_ok",
                                                         "roc_auc", {}, split) if c.render().get("type") == "table"][:1]
    assert [row[7] for row in table["data"]] == ["gpu x4", "cpu x4", "-"]  # "trained on"; unknown for older runs
    assert "`fell_back` asked for the GPU and was trained on the CPU: LightGBMError: No OpenCL device" in text
    assert "gpu_ok` asked" not in text


def test_distill_card_says_which_student_fell_back_from_the_gpu() -> None:
    cfg = DistillConfig(students=[{"name": "lgbm", "type": "lightgbm"}, {"name": "mlp", "type": "mlp"}])
    runtimes = {"native": {"cost_us_per_row": 2.0, "clock": "cpu"}, "onnx": {"cost_us_per_row": 0.5}}
    teacher = {"auc": 0.9, "runtimes": runtimes}
    table = [{"name": name, "kind": kind, "auc": 0.89, "auc_ratio": 0.99, "cost_ratio": 0.05, "runtimes": runtimes,
              "parity": {"onnx": {"max_abs_diff": 1e-7, "decision_flips": 0}}, "reasons": [], "fit": fit}
             for name, kind, fit in (("lgbm", "lightgbm", {"device": "cpu", "fallback": "LightGBMError: No OpenCL"}),
                                     ("mlp", "mlp", {"device": "cpu", "fallback": None}))]
    text = text_of(cards.distill_card(table, teacher, "lgbm", cfg, None))
    assert "`lgbm` asked for the GPU and was trained on the CPU: LightGBMError: No OpenCL." in text
    assert "`mlp` asked" not in text
