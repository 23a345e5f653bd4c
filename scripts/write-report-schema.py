"""Rewrite sweep/report/schema.json from the report's pydantic models (after changing them)."""

import json
from pathlib import Path

from sweep.report.schema import report_json_schema

target = Path(__file__).parents[1] / "sweep" / "report" / "schema.json"
target.write_text(json.dumps(report_json_schema(), indent=2) + "\n")
print(f"wrote {target}")
