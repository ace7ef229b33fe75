"""Check that a run's HTML index renders in headless Chromium (metrics, report card, figures) and
save a screenshot.   .venv/bin/python benchmarks/screenshot_index.py outputs/<run-id> [--png out.png]"""

import argparse
import json
from pathlib import Path

from workbench.runs import Run
from workbench.runs.index_page import screenshot_index

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("run")
ap.add_argument("--png", default=None)
args = ap.parse_args()
run = Run.open(args.run)
png = Path(args.png) if args.png else run.path / "index_screenshot.png"
result = screenshot_index(run, png)
print(json.dumps(result, indent=2))
ok = (
    result["images_decoded"] == result["images_in_page"] > 0
    and result["has_report_card"]
    and len(result["metric_names_shown"]) == result["metric_names_total"]
)
print("index rendered: " + ("yes" if ok else "NO"))
raise SystemExit(0 if ok else 1)
