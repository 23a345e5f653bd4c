"""The best-rank report, against the MLflow store of a real small sweep (values recomputed
here from the raw runs) and of hand-built stores for the unfinished and failed cases; the HTML
report rendered by headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from matplotlib import image as mpimg
from mlflow.tracking import MlflowClient
from support.cli import run_cli, run_cli_in_process
from support.report_store import (
    CPU_DEPLOY,
    EXPERIMENT,
    SWEEP,
    free_port,
    handmade_store,
    shared_sweep,
)

from sweep.report.ranking import pareto_front
from sweep.report.schema import SCHEMA_VERSION, Report, report_json_schema
from sweep.report.terminal import trials_table
from sweep.tracking.driver import DRIVER_TAG, driver_identity

SCHEMA_FILE = Path(__file__).parents[1] / "sweep" / "report" / "schema.json"
CHROMIUM = "/usr/bin/chromium"
WINDOW = (1280, 2000)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return shared_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def json_report(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-json")
    result = run_cli(
        "report",
        SWEEP,
        "--format",
        "json",
        "--out",
        str(out),
        *sweep.store_args(),
        cwd=sweep.folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), out


def _raw_trials(sweep):
    client = sweep.client()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`tucker_sweep.kind` = 'sweep' AND "
        f"tags.`tucker_sweep.sweep` = '{SWEEP}'",
    )
    trials = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' "
        "AND tags.`tucker_sweep.kind` = 'trial'",
    )
    return parent, trials


def _dominated(point, others):
    params, accuracy = point
    return any(p <= params and a >= accuracy and (p < params or a > accuracy) for p, a in others)


@pytest.mark.slow
def test_report_agrees_with_the_raw_runs(sweep, json_report):
    report, out = json_report
    parent, trials = _raw_trials(sweep)
    finished = [t for t in trials if t.data.tags["tucker_sweep.stop_reason"] != "failed"]
    metrics = {t.info.run_id: t.data.metrics for t in finished}

    assert report["schema_version"] == SCHEMA_VERSION == 4
    assert [row["role"] for row in report["dense"]] == ["trained"]
    assert report["sweep"]["name"] == SWEEP and not report["sweep"]["partial"]
    max_t = int(parent.data.params["max_t"])
    assert len(report["trials"]) == len(trials) == 8

    best_accuracy = max(m["best_val_acc"] for m in metrics.values())
    best = min(
        (m["params"], run_id) for run_id, m in metrics.items() if m["best_val_acc"] == best_accuracy
    )
    assert report["best"]["run_id"] == best[1]
    assert report["best"]["best_val_acc"] == pytest.approx(best_accuracy)
    assert report["best"]["ranks"] == {
        key.removeprefix("ranks/"): [int(v) for v in value.split("x")]
        for key, value in next(t for t in trials if t.info.run_id == best[1]).data.params.items()
        if key.startswith("ranks/")
    }

    for cost, key in (("params", "pareto_params"), ("flops", "pareto_flops")):
        points = {run_id: (m[cost], m["best_val_acc"]) for run_id, m in metrics.items()}
        expected = {
            run_id
            for run_id, point in points.items()
            if not _dominated(point, [p for r, p in points.items() if r != run_id])
        }
        assert set(report[key]) == expected, cost
        costs = [points[run_id][0] for run_id in report[key]]
        assert costs == sorted(costs)

    epochs_run = sum(int(t.data.metrics["epochs_run"]) for t in trials)
    asha = report["asha"]
    assert asha["trial_epochs_run"] == epochs_run
    assert asha["trial_epochs_full"] == len(trials) * max_t
    assert asha["saving_factor"] == pytest.approx(len(trials) * max_t / epochs_run)
    assert asha["saving_factor"] > 1, "ASHA stopped no trial early"
    stopped = sum(t.data.tags["tucker_sweep.stop_reason"] == "stopped_early" for t in trials)
    assert report["counts"].get("stopped_early", 0) == stopped

    # The recommended plan: the fewest parameters within half a point of the dense reference.
    reference = report["baseline"]["best_val_acc"]
    within = [(m["params"], -m["best_val_acc"], run_id) for run_id, m in metrics.items()
              if m["best_val_acc"] >= reference - 0.005]  # fmt: skip
    if within:
        assert report["recommended"]["trial"]["run_id"] == min(within)[2]
    else:
        assert report["recommended"]["trial"] is None and report["recommended"]["closest"]
    # Test accuracy: measured for the reference, every trial that ran to max_t and every trial
    # on a Pareto front, and for no other.
    assert report["baseline"]["test_acc"] is not None
    assert report["baseline"]["epochs_run"] == max_t, "the reference trains as long as a trial"
    on_front = set(report["pareto_params"]) | set(report["pareto_flops"])
    for trial in report["trials"]:
        measured = trial["status"] == "completed" or trial["run_id"] in on_front
        assert (trial["test_acc"] is not None) == measured, trial["trial_name"]
    reached = [
        m["epochs_to_target"] for m in metrics.values() if not math.isnan(m["epochs_to_target"])
    ]
    convergence = report["convergence"]
    assert convergence["trials_reached"] == len(reached)
    if reached:
        assert convergence["median_epochs_to_target"] == pytest.approx(float(np.median(reached)))
    assert (
        report["baseline"] is not None and report["baseline"]["params"] > report["best"]["params"]
    )

    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema == report_json_schema(), "regenerate it: python scripts/write-report-schema.py"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)
    assert json.loads((out / "report.schema.json").read_text()) == schema
    assert {"report.md", "report.html", "pareto.png", "curves.png", "ranks.png"} <= {
        path.name for path in out.iterdir()
    }
    logged = {a.path for a in sweep.client().list_artifacts(parent.info.run_id, "report")}
    assert {
        "report/report.json",
        "report/report.html",
        "report/report.md",
        "report/pareto.png",
    } <= logged


@pytest.mark.slow
def test_budget_and_minimum_compression_pick_the_recommended_plan(sweep, json_report, tmp_path):
    report, _ = json_report
    finished = [t for t in report["trials"] if t["status"] in ("completed", "stopped_early")]
    budget = sorted(t["params"] for t in finished)[len(finished) // 2]
    result = run_cli(
        "report",
        SWEEP,
        "--format",
        "json",
        "--budget",
        str(budget),
        "--min-compression",
        "2",
        "--max-drop",
        "1",
        "--minimise",
        "flops",
        "--no-log",
        "--out",
        str(tmp_path),
        *sweep.store_args(),
        cwd=sweep.folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reranked = json.loads(result.stdout)
    recommended = reranked["recommended"]
    eligible = [t for t in finished if t["params"] <= budget and t["compression"] >= 2]
    assert recommended["eligible_trials"] == len(eligible)
    floor = reranked["baseline"]["best_val_acc"] - 0.01
    within = [t for t in eligible if t["best_val_acc"] >= floor]
    if within:
        expected = min(within, key=lambda t: (t["flops"], -t["best_val_acc"]))
        assert recommended["trial"]["run_id"] == expected["run_id"]
    else:
        assert recommended["trial"] is None
    # Re-ranked from what MLflow holds: the trials and their figures are those of the sweep.
    assert {t["run_id"]: t["test_acc"] for t in reranked["trials"]} == {
        t["run_id"]: t["test_acc"] for t in report["trials"]
    }


@pytest.mark.slow
def test_markdown_report_prints_in_the_terminal(sweep, tmp_path):
    # Without SWEEP: the latest sweep of the experiment.
    result = run_cli(
        "report",
        "--config",
        str(sweep.config),
        "--no-log",
        "--out",
        str(tmp_path),
        cwd=sweep.folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for text in (
        "Tucker-rank report",
        SWEEP,
        "Headline",
        "Best trial",
        "Recommended",
        "Pareto front",
        "ASHA",
        "Convergence",
        "report.html",
    ):
        assert text in result.stdout, text
    markdown = (tmp_path / "report.md").read_text()
    assert "| trial |" in markdown and "![" in markdown


def _colour_pixels(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(image[..., :3] - np.array(rgb)) <= tolerance).all(axis=-1).sum())


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(sweep, json_report, tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure-chromium.sh installs it)")
    report, out = json_report
    html = (out / "report.html").read_text()
    # Three plots, and a fourth (speed) when the sweep measured speed.
    assert html.count("data:image/png;base64,") == len(report["plots"]) >= 3
    assert "http://" not in html and "https://" not in html, "the report must fetch nothing"
    shot = tmp_path / "shot.png"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        (out / "report.html").resolve().as_uri(),
    ]
    started = time.monotonic()
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), f"no screenshot after {time.monotonic() - started:.0f} s"
    image = (mpimg.imread(shot) * 255).round().astype(int)
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    distinct = len(np.unique(image[..., :3].reshape(-1, 3), axis=0))
    assert distinct > 200, f"only {distinct} colours: a blank page?"
    # The plots' colours (matplotlib's tab:orange for the Pareto front, the curves' and the
    # markers' colours) show that the embedded PNGs were decoded and drawn: the page's own CSS
    # is grey and pale yellow.
    assert _colour_pixels(image, (255, 127, 14)) > 500, "no Pareto front on the screenshot"
    saturated = int((image[..., :3].max(axis=-1) - image[..., :3].min(axis=-1) > 80).sum())
    assert saturated > 5000, f"{saturated} coloured pixels: plots missing from the screenshot"
    non_white = (image[..., :3] < 235).any(axis=-1)
    plots_band = non_white[WINDOW[1] // 3 :]
    assert plots_band.mean() > 0.03


def test_pareto_front_keeps_the_non_dominated_points():
    points = [
        ("a", 10, 0.5),
        ("b", 20, 0.9),
        ("c", 30, 0.8),
        ("d", 5, 0.2),
        ("e", 20, 0.7),
        ("f", 40, 0.95),
        ("g", 10, 0.5),
    ]
    assert pareto_front(points) == ["d", "a", "g", "b", "f"]


def _trial(ranks, history, stop_reason="completed", status="FINISHED", final=True):
    best = max(history) if history else math.nan
    reached = [e for e, a in enumerate(history, 1) if a >= 0.9]
    metrics = {
        "params": 100 * ranks[0],
        "flops": 2000 * ranks[0],
        "compression": 50 / ranks[0],
        "best_val_acc": best,
        "epochs_to_target": reached[0] if reached else math.nan,
        "seconds_to_target": 1.5 * reached[0] if reached else math.nan,
        "epochs_run": len(history),
        "stopped_early": float(stop_reason == "stopped_early"),
        "wall_seconds": 1.5 * len(history),
    }
    return {
        "ranks": ranks,
        "history": history,
        "stop_reason": stop_reason if final else None,
        "status": status,
        "metrics": metrics if final else None,
    }


def _recommended(uri: str, folder: Path, *flags: str) -> dict:
    result = run_cli("report", "--format", "json", "--tracking-uri", uri, "--experiment",
                     EXPERIMENT, "--no-log", "--out", str(folder), *flags, cwd=folder)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)["recommended"]


def test_the_smallest_plan_within_tolerance_is_recommended_and_test_accuracy_selects_nothing(
    tmp_path,
):
    # The dense reference: best val acc 0.96, test acc 0.95 (support.report_store).
    trials = {
        "big": _trial((8, 8, 3), [0.9, 0.965]),  # 800 params, above dense
        "small": _trial((4, 4, 2), [0.8, 0.957]),  # 400 params, 0.3 pt below dense
        "tiny": _trial((2, 2, 1), [0.7, 0.95]),  # 200 params, 1 pt below dense
        "mid": _trial((6, 6, 3), [0.7, 0.957]),  # 600 params, as good as "small"
    }
    # Test accuracies that would pick other plans if they were used to select.
    for name, test_acc in (("big", 0.90), ("small", 0.91), ("tiny", 0.99), ("mid", 0.98)):
        trials[name]["metrics"]["test_acc"] = test_acc
    trials["mid"]["metrics"]["flops"] = 1000  # the fewest FLOPs, though not the fewest params
    uri = handmade_store(tmp_path, list(trials.values()))
    index = {name: f"run_trial_abcde_{i:05d}" for i, name in enumerate(trials)}

    default = _recommended(uri, tmp_path)
    assert default["trial"]["trial_name"] == index["small"]
    assert default["criteria"] == {"max_params": None, "min_compression": 1.0, "max_drop": 0.5,
                                   "minimise": "params"}  # fmt: skip
    assert default["within_tolerance"] == 3 and default["eligible_trials"] == 4
    assert default["accuracy_delta"] == pytest.approx(-0.003)
    assert default["test_accuracy_delta"] == pytest.approx(0.91 - 0.95)
    assert _recommended(uri, tmp_path, "--max-drop", "1")["trial"]["trial_name"] == index["tiny"]
    assert _recommended(uri, tmp_path, "--max-drop", "0.1")["trial"]["trial_name"] == index["big"]
    by_flops = _recommended(uri, tmp_path, "--minimise", "flops")
    assert by_flops["trial"]["trial_name"] == index["mid"]
    # None within the tolerance: none recommended, the closest named.
    none = _recommended(uri, tmp_path, "--max-drop", "0.5", "--min-compression", "20")
    assert none["trial"] is None and none["within_tolerance"] == 0
    assert none["closest"]["trial_name"] == index["tiny"] and "closest" in none["note"]
    _fails(run_cli("report", "--minimise", "joules", "--tracking-uri", uri, cwd=tmp_path),
           "--minimise")  # fmt: skip


def test_a_running_sweep_gives_a_partial_report(tmp_path):
    uri = handmade_store(
        tmp_path,
        [
            _trial((8, 8, 3), [0.7, 0.91, 0.93, 0.94]),
            _trial((4, 4, 2), [0.5], "stopped_early"),
            _trial((6, 6, 3), [0.6, 0.92], status="RUNNING", final=False),
        ],
        sweep_status="RUNNING",
    )
    result = run_cli(
        "report",
        "--format",
        "json",
        "--tracking-uri",
        uri,
        "--experiment",
        EXPERIMENT,
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["sweep"]["partial"] and report["sweep"]["state"] == "running"
    running = next(t for t in report["trials"] if t["status"] == "running")
    assert running["best_val_acc"] == pytest.approx(0.92) and running["epochs_run"] == 2
    assert running["epochs_to_target"] == 2 and running["params"] is None
    assert report["best"]["ranks"] == {"block2.conv1": [8, 8, 3]}
    assert report["asha"]["trial_epochs_run"] == 7 and report["asha"]["trial_epochs_full"] == 12
    assert "Partial report" in (tmp_path / "out" / "report.md").read_text()
    jsonschema.validate(report, json.loads(SCHEMA_FILE.read_text()))


def test_a_sweep_whose_driver_died_reads_as_interrupted(tmp_path):
    # A driver killed outright (SIGKILL, a lost node) leaves its runs RUNNING: the report must
    # call the sweep interrupted, not running, and its unfinished trials too.
    uri = handmade_store(
        tmp_path,
        [
            _trial((8, 8, 3), [0.7, 0.91, 0.93, 0.94]),
            _trial((6, 6, 3), [0.6, 0.92], status="RUNNING", final=False),
        ],
        sweep_status="RUNNING",
    )
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`tucker_sweep.kind` = 'sweep'")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs, on this host
    client.set_tag(parent.info.run_id, DRIVER_TAG, f"{socket.gethostname()}:{gone.pid}:1.00")
    result = run_cli("report", "--format", "json", "--tracking-uri", uri, "--experiment",
                     EXPERIMENT, "--out", str(tmp_path / "out"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["sweep"]["state"] == "interrupted" and report["sweep"]["partial"]
    assert {t["status"] for t in report["trials"]} == {"completed", "interrupted"}
    # While its driver lives (this process), the same sweep is running.
    client.set_tag(parent.info.run_id, DRIVER_TAG, driver_identity())
    result = run_cli("report", "--format", "json", "--tracking-uri", uri, "--experiment",
                     EXPERIMENT, "--out", str(tmp_path / "out"), cwd=tmp_path)  # fmt: skip
    assert json.loads(result.stdout)["sweep"]["state"] == "running"


def _fails(result, *phrases):
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_clear_errors_for_unusable_sweeps_and_stores(tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    uri = handmade_store(
        failed,
        [_trial((4, 4, 2), [0.3], "failed", "FAILED"), _trial((8, 8, 3), [], "failed", "FAILED")],
    )
    store = ["--tracking-uri", uri, "--experiment", EXPERIMENT]
    _fails(run_cli("report", "handmade", *store, cwd=tmp_path), "every trial", "failed")
    _fails(run_cli("report", "nosuch", *store, cwd=tmp_path), "no sweep named 'nosuch'", "handmade")
    _fails(
        run_cli("report", "--tracking-uri", uri, "--experiment", "other", cwd=tmp_path),
        "no MLflow experiment named 'other'",
    )
    _fails(run_cli("report", cwd=tmp_path), "no MLflow store")
    assert not (tmp_path / "mlflow.db").exists(), "a report must not create an empty store"
    started = time.monotonic()
    _fails(
        run_cli("report", "--tracking-uri", f"http://127.0.0.1:{free_port()}", cwd=tmp_path),
        "cannot reach the MLflow tracking server",
    )
    assert time.monotonic() - started < 60, "a dead tracking server must fail fast"
    _fails(run_cli("report", "--format", "pdf", *store, cwd=tmp_path), "--format")
    _fails(run_cli("report", "--budget", "lots", *store, cwd=tmp_path), "--budget")

    empty = tmp_path / "empty"
    empty.mkdir()
    uri = handmade_store(empty, [], sweep_status="RUNNING")
    _fails(
        run_cli("report", "--tracking-uri", uri, "--experiment", EXPERIMENT, cwd=tmp_path),
        "nothing to report yet",
    )


@pytest.mark.parametrize(
    ("finetuned", "reference_role", "recommended"),
    [
        # Fine-tuned on the sweep's data, the given model is better: trials are held to it.
        ((0.985, 0.97), "finetuned", "big"),
        # Fine-tuning made it worse: the given model as it is stays the reference.
        ((0.93, 0.92), "given", "small"),
    ],
)
def test_a_pretrained_sweep_has_two_dense_rows_and_the_better_one_is_the_reference(
    tmp_path, capfd, finetuned, reference_role, recommended
):
    # The given model: best val acc 0.96, test acc 0.95 (support.report_store).
    trials = {
        "big": _trial((8, 8, 3), [0.9, 0.982]),  # 0.3 pt below the fine-tuned model
        "small": _trial((4, 4, 2), [0.8, 0.957]),  # 0.3 pt below the given model
    }
    uri = handmade_store(tmp_path, list(trials.values()), finetuned=finetuned)
    result = run_cli_in_process("report", "--format", "json", "--tracking-uri", uri,
                                "--experiment", EXPERIMENT, "--no-log", "--out",
                                str(tmp_path / "out"), cwd=tmp_path, capfd=capfd)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert [row["role"] for row in report["dense"]] == ["given", "finetuned"]
    assert [row["best_val_acc"] for row in report["dense"]] == [0.96, finetuned[0]]
    assert report["baseline"]["role"] == reference_role
    index = {name: f"run_trial_abcde_{i:05d}" for i, name in enumerate(trials)}
    chosen = report["recommended"]
    assert chosen["trial"]["trial_name"] == index[recommended]
    reference = max(0.96, finetuned[0])
    assert chosen["accuracy_delta"] == pytest.approx(trials[recommended]["history"][-1] - reference)
    assert "the better of the given model and the given model fine-tuned" in chosen["note"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| given model | given model fine-tuned |" in markdown
    assert "use the better of the two by val acc" in markdown


# ---- measured speed ------------------------------------------------------------------------------


def _speed_trials() -> dict[str, dict]:
    """Trials where the smallest plan within tolerance, the fastest one and the fastest of all
    differ (the dense reference: val acc 0.96, support.report_store)."""
    trials = {
        "small": _trial((4, 4, 2), [0.8, 0.957]),  # 400 params: the fewest within tolerance
        "fast": _trial((8, 8, 3), [0.9, 0.958]),  # 800 params: the fastest within tolerance
        "quickest": _trial((2, 2, 1), [0.7, 0.94]),  # 2 pt below dense: out of tolerance
        "unmeasured": _trial((6, 6, 3), [0.7, 0.962]),  # never reported a speed
    }
    trials["small"]["speed"] = {1: (1.0, 1.2), 64: (20.0, 60.0)}  # 1.2x at 1, 3x at 64
    trials["fast"]["speed"] = {1: (0.5, 1.05), 64: (40.0, 60.0)}  # 2.1x at 1, 1.5x at 64
    trials["quickest"]["speed"] = {1: (0.25, 1.0), 64: (10.0, 60.0)}  # 4x at 1
    # The brief's figures: 10.4x fewer parameters, 8.6x fewer FLOPs than dense (200,000).
    trials["fast"]["metrics"].update(compression=10.4, flops=23256)
    return trials


def _report(uri: str, folder: Path, capfd, *flags: str) -> dict:
    result = run_cli_in_process("report", "--format", "json", "--tracking-uri", uri,
                                "--experiment", EXPERIMENT, "--no-log", "--out", str(folder),
                                *flags, cwd=folder, capfd=capfd)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(SCHEMA_FILE.read_text()))
    return report


def _trial_named(report: dict, name: str) -> dict:
    return next(t for t in report["trials"] if t["trial_name"] == name)


def test_minimise_latency_recommends_the_fastest_plan_within_tolerance(tmp_path, capfd):
    trials = _speed_trials()
    uri = handmade_store(tmp_path, list(trials.values()), deploy=CPU_DEPLOY,
                         dense_latency={1: 1.1, 64: 55.0})  # fmt: skip
    index = {name: f"run_trial_abcde_{i:05d}" for i, name in enumerate(trials)}
    assert json.loads(SCHEMA_FILE.read_text()) == report_json_schema(), (
        "regenerate it: python scripts/write-report-schema.py"
    )

    by_params = _report(uri, tmp_path, capfd)["recommended"]
    assert by_params["trial"]["trial_name"] == index["small"]
    report = _report(uri, tmp_path, capfd, "--minimise", "latency")
    chosen = report["recommended"]
    # Not the smallest (small), not the fastest at batch 64 (small), not the fastest of all
    # (quickest, out of tolerance), not the unmeasured one.
    assert chosen["trial"]["trial_name"] == index["fast"]
    assert chosen["criteria"]["minimise"] == "latency" and chosen["within_tolerance"] == 3
    assert "highest measured speed-up at batch 1" in chosen["note"]
    fast = _trial_named(report, index["fast"])
    assert fast["latency_ms"] == {"1": 0.5, "64": 40.0}
    assert fast["speedup"] == pytest.approx({"1": 2.1, "64": 1.5})
    assert _trial_named(report, index["unmeasured"])["speedup"] is None
    # The speed front, fastest first: quickest (4x), then fast (2.1x, more accurate); small is
    # slower and less accurate than fast, and unmeasured has no speed.
    assert report["pareto_speedup"] == [
        _trial_named(report, index[name])["run_id"] for name in ("quickest", "fast")
    ]
    assert [t["trial_name"] for t in report["trials"] if t["on_pareto_speedup"]] == [
        index["fast"], index["quickest"]
    ]  # fmt: skip
    assert report["deploy"] == {"device": "cpu", "device_name": "AMD EPYC 7B13", "threads": 1,
                                "batch_sizes": [1, 64], "dtype": "float32"}  # fmt: skip
    assert [row["latency_ms"] for row in report["dense"]] == [{"1": 1.1, "64": 55.0}]
    assert report["plots"]["speed"] == "speed.png" and (tmp_path / "speed.png").is_file()

    markdown = (tmp_path / "report.md").read_text()
    trials_header = next(
        line for line in markdown.splitlines() if line.startswith("| trial | status")
    )
    assert trials_header.endswith("| epochs run | speed-up |")
    fast_row = next(line for line in markdown.splitlines() if line.startswith("| 00001 ▲ |"))
    assert fast_row.endswith("| 2.10x |")
    # Dense, the best trial (unmeasured) and the recommended one (fast).
    assert "| latency, batch 1 | 1.1 ms | – | 0.5 ms |" in markdown
    assert "## Pareto front: accuracy against measured speed-up (batch 1)" in markdown
    table = trials_table(Report.model_validate(report))
    assert [column.header for column in table.columns][-1] == "speed"


def test_the_headline_names_the_measured_device_threads_and_batch(tmp_path, capfd):
    uri = handmade_store(tmp_path, list(_speed_trials().values()), deploy=CPU_DEPLOY)
    report = _report(uri, tmp_path, capfd, "--minimise", "latency")
    assert report["headline"] == (
        "10.4x fewer params, 8.6x fewer FLOPs, 2.1x faster "
        "(measured: CPU AMD EPYC 7B13, 1 thread, batch 1)"
    )
    headline = (tmp_path / "report.md").read_text().split("## Headline", 1)[1].split("\n## ")[0]
    assert report["headline"] in headline and "Measured speed" in headline

    # A plan slower than dense, timed on a GPU (where CPU threads say nothing): said so.
    slower = tmp_path / "slower"
    slower.mkdir()
    trial = _trial((4, 4, 2), [0.8, 0.957])
    trial["speed"] = {8: (1.25, 1.0)}
    gpu = {**CPU_DEPLOY, "deploy/device": "cuda", "deploy/device_name": "NVIDIA H200",
           "deploy/batch_sizes": "8"}  # fmt: skip
    uri = handmade_store(slower, [trial], deploy=gpu)
    assert _report(uri, slower, capfd)["headline"] == (
        "12.5x fewer params, 25.0x fewer FLOPs, "
        "0.8x the dense speed (slower; measured: GPU NVIDIA H200, batch 8)"
    )


def test_a_sweep_without_speed_measurements_still_reports(tmp_path, capfd):
    trials = _speed_trials()
    for trial in trials.values():
        trial.pop("speed", None)
    uri = handmade_store(tmp_path, list(trials.values()))  # no deploy/* params either
    index = {name: f"run_trial_abcde_{i:05d}" for i, name in enumerate(trials)}
    report = _report(uri, tmp_path, capfd)
    assert report["schema_version"] == 4
    assert report["deploy"] is None and report["pareto_speedup"] == []
    assert report["headline"] == "12.5x fewer params, 25.0x fewer FLOPs"  # nothing on speed
    for trial in report["trials"]:
        assert trial["latency_ms"] is None and trial["speedup"] is None
        assert not trial["on_pareto_speedup"]
    assert report["dense"][0]["latency_ms"] is None
    assert "speed" not in report["plots"] and not (tmp_path / "speed.png").exists()
    markdown = (tmp_path / "report.md").read_text()
    for absent in ("speed-up", "latency", "Measured speed", "measured:", "▲"):
        assert absent not in markdown, absent
    (line,) = [line for line in markdown.splitlines() if line.startswith("- **In one line**")]
    assert line.endswith(": 12.5x fewer params, 25.0x fewer FLOPs."), line
    assert [column.header for column in trials_table(Report.model_validate(report)).columns][
        -1
    ] == "ep"
    # Ranked by a speed nobody measured: the best val acc within tolerance, and said so.
    by_latency = _report(uri, tmp_path, capfd, "--minimise", "latency")["recommended"]
    assert by_latency["trial"]["trial_name"] == index["unmeasured"]
    assert by_latency["note"].startswith("no speed was measured: the best val acc among")
