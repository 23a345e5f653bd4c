"""Writing a sweep's report: read the runs, build the report, write its files (report.md,
report.json with its schema, report.html, the plots) and log them on the sweep's parent run,
where the MLflow UI and its REST API serve them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweep.errors import ReportError, TrackingError, first_line
from sweep.folders import named_folder
from sweep.report.build import DEFAULT_CRITERIA, build_report
from sweep.report.schema import Criteria, Report
from sweep.tracking.names import REPORT_ARTIFACT_PATH
from sweep.tracking.sqlite_store import check_sqlite_store
from sweep.tracking.sweep_runs import RunRecord, load_sweep

REPORTS_FOLDER = Path("reports")


@dataclass(frozen=True)
class ReportOutcome:
    """What `write_sweep_report` produced."""

    report: Report
    markdown: str
    out_dir: Path
    files: dict[str, Path]  # md, json, html, schema and one per plot
    artifact_uri: str | None  # where the files were logged on the parent run (None: not logged)

    @property
    def partial(self) -> bool:
        return self.report.sweep.partial


def write_sweep_report(
    tracking_uri: str,
    sweep: str | None,
    experiment: str,
    out_dir: Path | None = None,
    *,
    criteria: Criteria = DEFAULT_CRITERIA,
    log_artifacts: bool = True,
) -> ReportOutcome:
    """Read the sweep (the latest in the experiment when `sweep` is None) from MLflow, write
    report.md, report.json, report.schema.json, report.html and the plots to `out_dir`
    (default reports/<sweep>), and log them under report/ on the sweep's parent run.

    Raises ReportError (unknown experiment or sweep, no trials, every trial failed) or
    TrackingError (store unreachable), both one-line user errors.
    """
    # matplotlib and the templates: loaded once the runs are known to be there.
    from sweep.report.plots import render_plots
    from sweep.report.render import render_html, render_markdown, report_json, schema_json

    if log_artifacts:  # a read-only store fails here, not after the report is built
        check_sqlite_store(
            tracking_uri, create=False, writes=True,
            read_only_hint="--no-log writes the report without logging it on the sweep's run",
        )  # fmt: skip
    client, runs = load_sweep(tracking_uri, sweep, experiment)
    if out_dir is not None:
        folder = Path(out_dir)
    else:
        folder = named_folder(REPORTS_FOLDER, runs.name, "the sweep name", ReportError)
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(client, runs, criteria)
    plot_files = render_plots(report, folder)
    report = report.model_copy(update={"plots": {k: p.name for k, p in plot_files.items()}})
    markdown = render_markdown(report)
    files = {
        "md": folder / "report.md",
        "json": folder / "report.json",
        "schema": folder / "report.schema.json",
        "html": folder / "report.html",
    }
    files["md"].write_text(markdown)
    files["json"].write_text(report_json(report))
    files["schema"].write_text(schema_json())
    files["html"].write_text(render_html(report, plot_files))
    files.update(plot_files)
    artifact_uri = None
    if log_artifacts:
        artifact_uri = _log_report(client, runs.parent, files)
        _describe_parent(client, runs.parent, markdown)
    return ReportOutcome(report, markdown, folder, files, artifact_uri)


# The tag MLflow's UI renders, as Markdown, as a run's description.
DESCRIPTION_TAG = "mlflow.note.content"
# MLflow stores a tag value of up to 8,000 characters; the headline takes far fewer.
_DESCRIPTION_LIMIT = 7000


def parent_description(markdown: str) -> str:
    """The sweep run's description: the report's title and headline section, and where the
    whole report is (MLflow's artifact viewer shows report.html inline)."""
    title = markdown.split("\n", 1)[0].lstrip("# ").strip()
    headline = markdown.split("## Headline", 1)[-1].split("\n## ", 1)[0].strip()
    pointer = (
        f"The whole report: `{REPORT_ARTIFACT_PATH}/report.html` (with its plots) under this "
        "run's Artifacts; `tucker-sweep report` prints it."
    )
    text = f"**{title}**\n\n{headline}\n\n{pointer}"
    return text if len(text) <= _DESCRIPTION_LIMIT else text[: _DESCRIPTION_LIMIT - 1] + "…"


def _describe_parent(client: MlflowClient, parent: RunRecord, markdown: str) -> None:
    try:
        client.set_tag(parent.run_id, DESCRIPTION_TAG, parent_description(markdown))
    except MlflowException as error:
        raise TrackingError(
            f"could not describe the sweep's run {parent.run_id}: {first_line(error)}"
        ) from None


def _log_report(client: MlflowClient, parent: RunRecord, files: dict[str, Path]) -> str:
    try:
        for path in files.values():
            client.log_artifact(parent.run_id, str(path), artifact_path=REPORT_ARTIFACT_PATH)
    except (MlflowException, OSError) as error:
        raise TrackingError(
            f"could not log the report on the sweep's run {parent.run_id}: {first_line(error)}"
        ) from None
    return f"{parent.artifact_uri.rstrip('/')}/{REPORT_ARTIFACT_PATH}"
