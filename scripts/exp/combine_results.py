"""One plot and one table from several `lwd bench learning` JSONs of the same tasks (runs made one algorithm at a
time, e.g. bench/results/pick_place/eleven_rounds/).

    combine_results.py OUT_PNG RESULTS.json [RESULTS.json ...]

Writes OUT_PNG (success vs robot-hours with 95% Wilson bands, as `lwd bench learning` plots a run) and prints the
Markdown table.
"""
import json
import sys
from pathlib import Path

from lwd.app.bench import plot_curves, results_table

out, paths = Path(sys.argv[1]), sys.argv[2:]
results, tasks = {}, None
for p in paths:
    d = json.loads(Path(p).read_text())
    t = d["config"]["tasks"]
    if tasks is not None and t != tasks:
        raise SystemExit(f"{p}: tasks {t} differ from {tasks}")
    tasks = t
    for algo, rows in d["results"].items():
        if algo in results:
            raise SystemExit(f"{p}: {algo} appears twice")
        results[algo] = rows
plot_curves(results, tasks, out)
print(results_table(results, tasks))
