"""What render_report.py (the CPU run) and render_gpu_report.py (the GPU run) read the same
way: the dsinfer-eval JSON files one job each (plus its `.time`), the budget ratios the pages
tabulate, and the key a run is filed under. Kept in one place so that both pages name ratios
and look runs up identically.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RATIOS = [0.5, 0.25, 0.125, 0.0625, 0.03125]


def frac(r):
    """0.125 -> '1/8'."""
    return f"1/{round(1 / r)}"


def load(d, name):
    """The JSON of job `name` in directory `d`, with `_wall`/`_user` seconds from its `.time`
    file when there is one; None when the job left no JSON."""
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        j = json.load(f)
    t = os.path.join(d, name + ".time")
    if os.path.exists(t):
        wall, user = open(t).read().split()[:2]
        j["_wall"], j["_user"] = float(wall), float(user)
    return j


def run_key(r):
    """'dense', or (budget_ratio, label_bits, aggregation) for a Double Sparsity run."""
    return "dense" if r["mode"] == "dense" else (r["budget_ratio"], r["label_bits"], r["aggregation"])


def ppl_runs(j):
    """{run_key: run} of a perplexity job (empty for a missing job)."""
    return {run_key(r): r for r in (j or {}).get("runs", [])}


def ret_runs(j):
    """{run_key: run} of a retrieval job (empty for a missing job)."""
    return {run_key(r): r for r in (j or {}).get("retrieval", [])}
