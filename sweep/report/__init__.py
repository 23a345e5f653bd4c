"""A sweep's best-rank report, from its MLflow runs (Ray is never loaded here).

outcome = write_sweep_report("sqlite:///mlflow.db", sweep="digits", experiment="tucker-sweep")
outcome.report.best.ranks, outcome.files["html"]

build.py        runs -> the report model (schema.py: its pydantic models and JSON Schema)
ranking.py      finished trials, best first; the Pareto front
convergence.py  do small ranks converge faster than dense?
render.py       Markdown, HTML and JSON from templates/ ; terminal.py the terminal view
plots.py        the PNG plots
write.py        the files, logged on the sweep's parent run
"""
