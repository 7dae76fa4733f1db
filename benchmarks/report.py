"""Summaries, the markdown report and plots of a benchmark results document.

matplotlib is not a dependency of maasrec: it is imported only inside the plotting
functions, and a missing matplotlib skips the plots with a message.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# metric base name -> True when larger is better
_HIGHER_IS_BETTER = {"precision": True, "recall": True, "f1": True, "ndcg": True, "map": True,
                     "mrr": True, "hit": True, "coverage": True, "novelty": True,
                     "diversity": True, "gini": False}


# ---------------------------------------------------------------------------
# small formatting helpers
# ---------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``nan`` for one value)."""
    x = np.asarray([v for v in values if v is not None and not _isnan(v)], dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def _isnan(v: Any) -> bool:
    """True for None and NaN (results read back from JSON hold None for NaN)."""
    if v is None:
        return True
    try:
        return math.isnan(v)
    except TypeError:
        return False


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``"0.3412 ± 0.0021"``; just the mean when std is undefined (one seed)."""
    if _isnan(mean):
        return "–"
    if _isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_seconds(s: float | None) -> str:
    if s is None or _isnan(s):
        return "–"
    if s >= 100:
        return f"{s:.0f}"
    if s >= 10:
        return f"{s:.1f}"
    if s >= 0.1:
        return f"{s:.2f}"
    return f"{s:.3f}"


def fmt_p(p: float | None) -> str:
    if p is None or _isnan(p):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def bold_best(cells: list[str], values: list[float], higher_is_better: bool) -> list[str]:
    """Bold every cell whose value equals the best one (ties all bold)."""
    finite = [v for v in values if v is not None and not _isnan(v)]
    if not finite:
        return cells
    best = max(finite) if higher_is_better else min(finite)
    return [f"**{c}**" if v is not None and not _isnan(v) and v == best else c
            for c, v in zip(cells, values)]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r)
                   + " |")
    return "\n".join(out)


def _higher(metric: str) -> bool:
    return _HIGHER_IS_BETTER.get(metric.split("@")[0], True)


# ---------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------
def _per_user(rec: dict[str, Any], metric: str) -> pd.Series | None:
    path = rec.get("per_user_file")
    if not path or not Path(path).is_file():
        return None
    df = pd.read_csv(path, index_col=0)
    return df[metric] if metric in df.columns else None


def _mean_per_user(recs: list[dict[str, Any]], metric: str, seeds: list[int]) -> pd.Series | None:
    """Per-user values averaged over ``seeds`` (users present in every seed)."""
    parts = []
    for r in recs:
        if r["seed"] in seeds:
            s = _per_user(r, metric)
            if s is None:
                return None
            parts.append(s)
    if not parts:
        return None
    df = pd.concat(parts, axis=1, join="inner")
    return df.mean(axis=1)


def paired(recs_a: list[dict], recs_b: list[dict], metric: str) -> dict[str, Any] | None:
    """maasrec.metrics.paired_test of two models on per-user values (mean over common seeds)."""
    from maasrec.metrics import paired_test

    from .runner import as_namespace_result

    seeds = sorted({r["seed"] for r in recs_a} & {r["seed"] for r in recs_b})
    if not seeds:
        return None
    a = _mean_per_user(recs_a, metric, seeds)
    b = _mean_per_user(recs_b, metric, seeds)
    if a is None or b is None:
        return None
    try:
        t = paired_test(as_namespace_result(a.index.to_numpy(), a.to_numpy(), metric),
                        as_namespace_result(b.index.to_numpy(), b.to_numpy(), metric),
                        metric, random_state=0)
    except ValueError as exc:
        return {"error": str(exc)}
    return {"metric": metric, "seeds": seeds, "n_users": t.n_users, "mean_a": t.mean_a,
            "mean_b": t.mean_b, "mean_diff": t.mean_diff, "ci": list(t.ci),
            "t_pvalue": t.t_pvalue, "wilcoxon_pvalue": t.wilcoxon_pvalue}


#: Parameter names that set the number of training epochs (maasrec and the peers).
EPOCH_PARAMS = ("epochs", "iterations", "max_iter", "num_epochs", "n_epochs")


def epochs_of(rec: dict[str, Any]) -> int | None:
    """Training epochs of one run: what the model reports (early stopping included), else
    the epoch parameter of the run, else None (models without epochs, e.g. EASE)."""
    log = (rec.get("meta") or {}).get("training_log") or {}
    n = log.get("epochs_trained") or log.get("epochs_run")
    if n:
        return int(n)
    params = rec.get("params") or {}
    for key in EPOCH_PARAMS:
        if isinstance(params.get(key), (int, float)) and params[key] > 0:
            return int(params[key])
    return None


def summarize_experiment(e: dict[str, Any], suite) -> dict[str, Any]:
    """Per-model aggregates over seeds, best-vs-best test, shared algorithms, checks."""
    pm = suite.primary_metric if hasattr(suite, "primary_metric") else suite["primary_metric"]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in e["runs"]:
        by_model.setdefault(r["model"], []).append(r)
    summary = []
    for key, recs in by_model.items():
        ok = [r for r in recs if r["status"] == "ok"]
        s: dict[str, Any] = {
            "model": key, "library": recs[0]["library"], "model_name": recs[0]["model_name"],
            "algorithm": recs[0].get("algorithm"), "params": recs[0]["params"],
            "library_version": next((r.get("library_version") for r in ok), None),
            "seeds": [r["seed"] for r in recs], "seeds_ok": [r["seed"] for r in ok],
            "status": "ok" if len(ok) == len(recs) else (recs[0]["status"] if not ok
                                                          else "partial"),
            "errors": [{"seed": r["seed"], "status": r["status"], "error": r.get("error")}
                       for r in recs if r["status"] != "ok"],
            "run_ids": sorted({r["run_id"] for r in recs if r.get("run_id")}),
        }
        if ok:
            names = list(ok[0]["metrics"])
            s["metrics"] = {}
            for n in names:
                vals = [r["metrics"].get(n) for r in ok]
                m, sd = mean_std(vals)
                s["metrics"][n] = {"mean": m, "std": sd, "values": vals}
            fits = [t for r in ok for t in r["fit_times_s"]]
            s["fit_time_s"] = {"min": float(min(fits)), "median": float(np.median(fits)),
                               "n": len(fits)}
            s["epochs"] = [epochs_of(r) for r in ok]
            per_epoch = [min(r["fit_times_s"]) / n for r, n in zip(ok, s["epochs"])
                         if r.get("fit_times_s") and n]
            s["fit_per_epoch_s"] = (float(min(per_epoch)) if len(per_epoch) == len(ok)
                                    else None)
            ratios = [r["fit_ratio"] for r in ok if r.get("fit_ratio")]
            s["fit_ratio"] = float(np.median(ratios)) if ratios else None
            rts = [r["recommend_time_s"] for r in ok if r.get("recommend_time_s") is not None]
            s["recommend_time_s"] = float(np.median(rts)) if rts else None
            peaks = [r["peak_rss_mib"] for r in ok if r.get("peak_rss_mib")]
            s["peak_rss_mib"] = float(max(peaks)) if peaks else None
            s["list_check_ok"] = all(r.get("list_check", {}).get("ok", False) for r in ok)
        summary.append(s)

    def best_of(pred) -> str | None:
        cands = [s for s in summary if pred(s) and s.get("metrics") and pm in s["metrics"]]
        if not cands:
            return None
        return max(cands, key=lambda s: s["metrics"][pm]["mean"])["model"]

    ours = best_of(lambda s: s["library"] == "maasrec")
    theirs = best_of(lambda s: s["library"] != "maasrec")
    bvb: dict[str, Any] = {"maasrec_best": ours, "peer_best": theirs}
    if ours and theirs:
        bvb["test"] = paired([r for r in by_model[ours] if r["status"] == "ok"],
                             [r for r in by_model[theirs] if r["status"] == "ok"], pm)
    shared = []
    algos = sorted({s["algorithm"] for s in summary if s.get("algorithm")})
    for a in algos:
        mine = [s for s in summary if s.get("algorithm") == a and s["library"] == "maasrec"
                and s.get("metrics")]
        peers = [s for s in summary if s.get("algorithm") == a and s["library"] != "maasrec"]
        for x in mine:
            for y in peers:
                row: dict[str, Any] = {"algorithm": a, "maasrec": x["model"], "peer": y["model"],
                                       "peer_status": y["status"]}
                if y.get("metrics"):
                    row["maasrec_value"] = x["metrics"][pm]["mean"]
                    row["peer_value"] = y["metrics"][pm]["mean"]
                    row["test"] = paired(
                        [r for r in by_model[x["model"]] if r["status"] == "ok"],
                        [r for r in by_model[y["model"]] if r["status"] == "ok"], pm)
                    row["fit_time_ratio"] = x["fit_time_s"]["min"] / y["fit_time_s"]["min"]
                    if x.get("fit_per_epoch_s") and y.get("fit_per_epoch_s"):
                        # the same ratio per training epoch: fair where the two trained
                        # for different numbers of epochs (early stopping, budget caps)
                        row["fit_per_epoch_ratio"] = x["fit_per_epoch_s"] / y["fit_per_epoch_s"]
                        row["epochs"] = [x["epochs"], y["epochs"]]
                    if x.get("fit_ratio") and y.get("fit_ratio"):
                        row["fit_ratio_calibrated"] = x["fit_ratio"] / y["fit_ratio"]
                shared.append(row)
    checks = []
    for r in e["runs"]:
        for c in r.get("crosscheck", []) or []:
            checks.append({"model": r["model"], "library": r["library"], "seed": r["seed"], **c})
    consistency = [{"model": r["model"], "seed": r["seed"], **r["consistency"]}
                   for r in e["runs"] if r.get("consistency")]
    return {"summary": summary, "best_vs_best": bvb, "shared": shared, "crosscheck": checks,
            "consistency": consistency}


# ---------------------------------------------------------------------------
# merging runs (models added later, on the same splits)
# ---------------------------------------------------------------------------
class MergeError(ValueError):
    """Two results documents cannot be merged (other suite, scoring or split files)."""


def _run_info(doc: dict[str, Any], run_id: str) -> dict[str, Any]:
    models = sorted({r["model"] for e in doc.get("experiments", []) for r in e.get("runs", [])
                     if r.get("status") != "skipped"})
    loads = [r["loadavg_start"][0] for e in doc.get("experiments", [])
             for r in e.get("runs", []) if r.get("loadavg_start")]
    return {"id": run_id, "started": doc.get("started"), "finished": doc.get("finished"),
            "wall_s": doc.get("wall_s"), "loadavg_start": doc.get("machine", {}).get("loadavg"),
            "loadavg_end": doc.get("loadavg_end"),
            "run_loadavg_1min": [min(loads), max(loads)] if loads else None,
            "options": doc.get("options"), "versions": doc.get("versions"),
            "git": doc.get("git"),
            "experiments": [e["name"] for e in doc.get("experiments", [])], "models": models}


def merge_results(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The runs of ``new`` merged into ``base``: one table per experiment.

    For models added after a full run (e.g. ``run standard --models Sequential``): a run
    of ``new`` replaces the run of the same model and seed in ``base``, other runs are
    added; summaries, best-vs-best tests and shared-algorithm rows are recomputed. Each
    run keeps a ``run_id`` (``"A"`` for the base run, then ``"B"``, ...) and
    ``runs_info`` records when each run happened, on what load, with what options and
    versions, so the report can say which rows came from which run.

    Raises
    ------
    MergeError
        Different suites, metrics, cut-offs or primary metric, or split files whose
        SHA-256 differ for the same experiment and seed (the rows would not be comparable).
    """
    import copy

    kinds = {base.get("kind", "compare"), new.get("kind", "compare")}
    if kinds == {"scaling"}:
        from .scaling import merge_scaling

        return merge_scaling(base, new)
    if "scaling" in kinds:
        raise MergeError("cannot merge a scaling suite's results with a compare suite's")
    bs, ns = base["suite"], new["suite"]
    for key in ("name", "k", "metrics", "primary_metric"):
        if bs.get(key) != ns.get(key):
            raise MergeError(f"cannot merge: suite {key} differs (base {bs.get(key)!r}, new "
                             f"{ns.get(key)!r})")
    out = copy.deepcopy(base)
    infos = out.get("runs_info") or [_run_info(base, "A")]
    first = infos[0]["id"]
    for e in out["experiments"]:
        for r in e["runs"]:
            r.setdefault("run_id", first)
        e.setdefault("wall_s_by_run", {first: e.get("wall_s")})
    run_id = chr(ord("A") + len(infos))
    infos.append(_run_info(new, run_id))
    out["runs_info"] = infos
    out["suite"] = copy.deepcopy(ns)  # the current file: it lists the models added
    by_name = {e["name"]: e for e in out["experiments"]}
    for ne in new["experiments"]:
        ne = copy.deepcopy(ne)
        for r in ne["runs"]:
            r["run_id"] = run_id
        be = by_name.get(ne["name"])
        if be is None:
            ne["wall_s_by_run"] = {run_id: ne.get("wall_s")}
            out["experiments"].append(ne)
            by_name[ne["name"]] = ne
            be = ne
        else:
            for seed, sp in ne.get("splits", {}).items():
                old = be.get("splits", {}).get(seed)
                if old is not None and old.get("sha256") != sp.get("sha256"):
                    raise MergeError(
                        f"cannot merge {ne['name']!r} seed {seed}: its split files differ from "
                        f"the base run's (SHA-256 {sp.get('sha256')} vs {old.get('sha256')}); "
                        f"rerun with the base run's --work directory, or rerun everything")
                be.setdefault("splits", {})[seed] = old or sp
            ran = [r for r in ne["runs"] if r.get("status") != "skipped"]
            keys = {(r["model"], r["seed"]) for r in ran}
            be["runs"] = [r for r in be["runs"] if (r["model"], r["seed"]) not in keys] + ran
            be["seeds"] = sorted(set(be.get("seeds", [])) | set(ne.get("seeds", [])))
            be.setdefault("wall_s_by_run", {})[run_id] = ne.get("wall_s")
            be["wall_s"] = sum(v or 0.0 for v in be["wall_s_by_run"].values())
        be.update(summarize_experiment(be, out["suite"]))
    for lib, st in new.get("peers", {}).items():
        if st.get("available") or lib not in out.get("peers", {}):
            out.setdefault("peers", {})[lib] = st
    out["finished"] = new.get("finished", out.get("finished"))
    out["wall_s"] = sum(i.get("wall_s") or 0.0 for i in infos)
    out["loadavg_end"] = new.get("loadavg_end", out.get("loadavg_end"))
    return out


def _git_cell(g: dict[str, Any] | None) -> str:
    if not g or not g.get("commit"):
        return " (commit not recorded)"
    mod = g.get("modified_files") or []
    return f", commit {g['commit'][:7]}" + (f" + {len(mod)} modified file(s)" if mod else "")


def runs_markdown(results: dict[str, Any]) -> str:
    """Which run produced which rows, when and on what load (merged reports only)."""
    infos = results.get("runs_info") or []
    if len(infos) < 2:
        return ""
    rows = []
    for i in infos:
        ld = i.get("run_loadavg_1min")
        vers = (i.get("versions") or {}).get("maasrec_env", {})
        rows.append([i["id"], f"{i.get('started')} → {i.get('finished')}",
                     f"{(i.get('wall_s') or 0) / 60:.1f}",
                     "–" if not ld else f"{ld[0]:.1f}–{ld[1]:.1f}",
                     ", ".join(i.get("experiments", [])),
                     f"{len(i.get('models', []))} model(s)" if i["id"] == infos[0]["id"]
                     else ", ".join(i.get("models", [])),
                     f"maasrec {vers.get('maasrec', '?')}, torch {vers.get('torch', '?')}"
                     + _git_cell(i.get("git"))])
    return "\n".join([
        f"This report merges {len(infos)} runs on the **same split files** (SHA-256 checked "
        f"per experiment and seed) and the same scoring code. Rows of a later run are marked "
        f"with its letter, e.g. `[run {infos[1]['id']}]`; unmarked rows are from run "
        f"{infos[0]['id']}. Loads differ between runs: compare times within a run, or the "
        f"load-normalised \"fit ÷ calib\" column.", "",
        markdown_table(["run", "started → finished", "minutes",
                        "1-min load when runs started", "experiments", "models", "versions"],
                       rows), ""])


# ---------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------
def table_columns(suite: dict[str, Any]) -> list[str]:
    """Metric columns of the main table: every metric at the first k, ndcg/recall at the others."""
    ks = suite["k"]
    bases = []
    for m in suite["metrics"]:
        b = m.split("@")[0]
        if b not in bases:
            bases.append(b)
    cols = [f"{b}@{ks[0]}" for b in bases]
    for k in ks[1:]:
        cols += [f"{b}@{k}" for b in ("ndcg", "recall") if b in bases]
    return cols


_LABEL = {"ndcg": "NDCG", "recall": "Recall", "precision": "Prec", "map": "MAP", "mrr": "MRR",
          "hit": "HR", "coverage": "Cov", "novelty": "Nov", "f1": "F1", "diversity": "ILD",
          "gini": "Gini"}


def _label(col: str) -> str:
    b, _, k = col.partition("@")
    return f"{_LABEL.get(b, b)}@{k}"


def _model_cell(s: dict[str, Any]) -> str:
    v = s.get("library_version")
    lib = s["library"] + (f" {v}" if v else "")
    default = f"{s['library']}:{s['model_name']}"
    return f"{lib} | {s['model_name'] if s['model'] == default else s['model']}"


def _epochs_cell(row: dict[str, Any]) -> str:
    """``ratio (a / b)`` of a shared-algorithm row, or "–" without epoch counts."""
    r = row.get("fit_per_epoch_ratio")
    if r is None:
        return "–"

    def span(xs: list) -> str:
        xs = sorted({int(x) for x in xs if x})
        return str(xs[0]) if len(xs) == 1 else f"{xs[0]}–{xs[-1]}"

    a, b = row.get("epochs", [[], []])
    return f"{r:.2f} ({span(a)} / {span(b)})"


def fmt_ratio(x: float | None) -> str:
    if x is None or _isnan(x):
        return "–"
    return f"{x:.1f}" if x >= 10 else f"{x:.2g}"


def experiment_markdown(e: dict[str, Any], suite: dict[str, Any],
                        first_run: str | None = None) -> str:
    """One experiment: data, main table, best-vs-best test, shared algorithms, failures.

    ``first_run``: in a merged report, the id of the base run (rows of other runs are
    marked with theirs).
    """
    pm = suite["primary_metric"]
    cols = table_columns(suite)
    lines = [f"### {e['name']}", ""]
    split0 = next(iter(e.get("splits", {}).values()), None)
    desc = f"Data: **{e['dataset']}**, protocol `{e['protocol']}`, seeds {e['seeds']}."
    if split0 and "n_rows" in split0 and "counts" in split0:
        n = split0["n_rows"]
        c = split0["counts"]["test"]
        desc += (f" Rows (seed {split0['seed']}): train {n['train']:,}"
                 + (f" / valid {n['valid']:,}" if "valid" in n else "")
                 + f" / test {n['test']:,}; scored test pairs {c['relevant_rows']:,} of "
                   f"{c['users']:,} users (left out: {c['rows_cold_item']} with an item not in "
                   f"train, {c['rows_cold_user']} cold-user rows, {c['rows_seen_before']} "
                   f"already seen).")
    if e.get("description"):
        desc += " " + e["description"]
    run_ids = sorted({r.get("run_id") for r in e.get("runs", [])} - {None})
    if len(run_ids) > 1:
        parts = []
        for rid in run_ids:
            loads = [r["loadavg_start"][0] for r in e["runs"]
                     if r.get("run_id") == rid and r.get("loadavg_start")]
            wall = (e.get("wall_s_by_run") or {}).get(rid)
            parts.append(f"run {rid}: load {min(loads):.1f}–{max(loads):.1f}"
                         + ("" if wall is None else f", wall time {wall / 60:.1f} min")
                         if loads else f"run {rid}")
        desc += " 1-minute load average when the runs started: " + "; ".join(parts) + "."
    else:
        loads = [r["loadavg_start"][0] for r in e.get("runs", []) if r.get("loadavg_start")]
        if loads:
            desc += (f" 1-minute load average when the runs started: {min(loads):.1f}–"
                     f"{max(loads):.1f}; wall time {e.get('wall_s', 0) / 60:.1f} min.")
    lines += [desc, ""]
    if e.get("error"):
        lines += [f"**Experiment failed:** {e['error']}", ""]
    ok = [s for s in e.get("summary", []) if s.get("metrics")]
    if ok:
        header = ["library", "model"] + [_label(c) for c in cols] + [
            "fit s (min / med)", "fit ÷ calib", "rec s", "peak MiB"]
        cells = {c: [] for c in cols}
        vals = {c: [] for c in cols}
        for s in ok:
            for c in cols:
                m = s["metrics"].get(c, {"mean": float("nan"), "std": float("nan")})
                cells[c].append(fmt_mean_std(m["mean"], m["std"]))
                vals[c].append(m["mean"])
        for c in cols:
            cells[c] = bold_best(cells[c], vals[c], _higher(c))
        costs = {
            "fit": ([s["fit_time_s"]["min"] for s in ok],
                    [f"{fmt_seconds(s['fit_time_s']['min'])} / "
                     f"{fmt_seconds(s['fit_time_s']['median'])}" for s in ok]),
            "ratio": ([s.get("fit_ratio") for s in ok],
                      [fmt_ratio(s.get("fit_ratio")) for s in ok]),
            "rec": ([s.get("recommend_time_s") for s in ok],
                    [fmt_seconds(s.get("recommend_time_s")) for s in ok]),
            "mem": ([s.get("peak_rss_mib") for s in ok],
                    [("–" if s.get("peak_rss_mib") is None else f"{s['peak_rss_mib']:.0f}")
                     for s in ok]),
        }
        cost_cells = {k: bold_best(v[1], v[0], False) for k, v in costs.items()}
        rows = []
        for i, s in enumerate(ok):
            mark = "" if s.get("list_check_ok", True) else " ⚠"
            if s["status"] == "partial":
                mark += f" (seeds {s['seeds_ok']} of {s['seeds']})"
            later = [x for x in s.get("run_ids", []) if x != first_run]
            if first_run is not None and later:
                mark += f" [run {', '.join(later)}]"
            lib, model = _model_cell(s).split(" | ")
            rows.append([lib, model + mark] + [cells[c][i] for c in cols]
                        + [cost_cells["fit"][i], cost_cells["ratio"][i], cost_cells["rec"][i],
                           cost_cells["mem"][i]])
        lines += [markdown_table(header, rows), ""]
    bvb = e.get("best_vs_best", {})
    t = bvb.get("test")
    if t and "error" not in t:
        lines += [f"**maasrec's best vs the best peer** ({pm}, per-user values averaged over "
                  f"seeds {t['seeds']}): {bvb['maasrec_best']} {t['mean_a']:.4f} vs "
                  f"{bvb['peer_best']} {t['mean_b']:.4f}, difference {t['mean_diff']:+.4f} "
                  f"(95% CI {t['ci'][0]:+.4f} to {t['ci'][1]:+.4f}), paired t-test "
                  f"p = {fmt_p(t['t_pvalue'])}, Wilcoxon p = {fmt_p(t['wilcoxon_pvalue'])}, "
                  f"{t['n_users']:,} users.", ""]
    elif bvb.get("maasrec_best") and not bvb.get("peer_best"):
        lines += [f"maasrec's best: {bvb['maasrec_best']} (no peer result to compare with).", ""]
    shared = [r for r in e.get("shared", []) if "maasrec_value" in r]
    if shared:
        rows = []
        for r in shared:
            tt = r.get("test") or {}
            rows.append([r["algorithm"], r["maasrec"], r["peer"], f"{r['maasrec_value']:.4f}",
                         f"{r['peer_value']:.4f}", f"{r['maasrec_value'] - r['peer_value']:+.4f}",
                         fmt_p(tt.get("t_pvalue")), f"{r['fit_time_ratio']:.2f}",
                         ("–" if r.get("fit_ratio_calibrated") is None
                          else f"{r['fit_ratio_calibrated']:.2f}"),
                         _epochs_cell(r)])
        lines += ["Shared algorithms (maasrec's implementation vs the peer's; fit-time ratio "
                  "maasrec/peer of the fastest fit, < 1 = maasrec faster; per epoch: the "
                  "fit time divided by the epochs each trained, for runs whose epoch "
                  "counts differ — early stopping, peers' budget caps):", "",
                  markdown_table(["algorithm", "maasrec", "peer", pm + " maasrec", pm + " peer",
                                  "diff", "paired t p", "fit ratio", "fit ratio (calibrated)",
                                  "per-epoch ratio (epochs maasrec / peer)"],
                                 rows), ""]
    failed = [s for s in e.get("summary", []) if s["status"] not in ("ok",)]
    if failed:
        rows = []
        for s in failed:
            for err in s["errors"]:
                msg = (err.get("error") or "").strip().splitlines()
                short = msg[0] if msg else ""
                if len(msg) > 1:
                    short += " … " + msg[-1]
                rows.append([s["model"], str(err["seed"]), err["status"], short[:300]])
        lines += ["Runs that did not produce results (reported, not dropped):", "",
                  markdown_table(["model", "seed", "status", "error"], rows), ""]
    return "\n".join(lines)


def checks_markdown(results: dict[str, Any]) -> str:
    lines = []
    cons = [(e["name"], c) for e in results["experiments"] for c in e.get("consistency", [])]
    if cons:
        worst = max(c["max_abs_diff"] for _, c in cons)
        bad = [f"{n}/{c['model']}/seed {c['seed']}" for n, c in cons if not c["agree"]]
        lines += [f"**Consistency (maasrec models):** `evaluate()` on the fitted model and "
                  f"`evaluate_lists()` on its written lists agree on every metric and every "
                  f"user to {worst:.1e} (max abs difference over {len(cons)} runs; tolerance "
                  f"1e-9)" + (f"; DISAGREEING: {bad}" if bad else "") + ".", ""]
    checks = [(e["name"], c) for e in results["experiments"] for c in e.get("crosscheck", [])]
    if checks:
        rows = []
        for lib in sorted({c["library"] for _, c in checks}):
            mine = [c for _, c in checks if c["library"] == lib]
            same = [c for c in mine if c["definitions_match"]]
            diff = [c for c in mine if not c["definitions_match"]]
            runs = {(n, c["model"], c["seed"]) for n, c in checks if c["library"] == lib}
            rows.append([lib, str(len(runs)), str(len(same)),
                         "–" if not same else f"{max(c['abs_diff'] for c in same):.1e}",
                         "–" if not same else ("all ✓" if all(c["agree"] for c in same)
                                               else f"{sum(not c['agree'] for c in same)} ✗"),
                         "–" if not diff else f"{max(c['abs_diff'] for c in diff):.1e}"])
        lines += ["**Cross-check: each peer's own metric code on the same lists and truth vs "
                  "maasrec's `evaluate_lists`** (every peer run; tolerance 1e-6 where the "
                  "definitions match):", "",
                  markdown_table(["library", "runs", "comparisons, same definition",
                                  "max abs diff", "agree", "max abs diff, different "
                                                           "definition (expected)"], rows), ""]
        detail = []
        first: dict[str, tuple] = {}
        for n, c in checks:
            key = (n, c["model"], c["seed"])
            if first.setdefault(c["library"], key) != key:
                continue
            detail.append([n, c["model"], str(c["seed"]), c["peer_metric"],
                           f"{c['peer_value']:.6f}", f"{c['maasrec_value']:.6f}",
                           f"{c['abs_diff']:.1e}", "yes" if c["definitions_match"] else "no",
                           ("✓" if c["agree"] else ("✗" if c["definitions_match"]
                                                    else "differs (expected)")),
                           c["definition"]])
        lines += ["One run per library in detail (all runs are in `results.json`). LensKit's "
                  "default `NDCG` discounts by 1/log2(max(rank, 2)) and its `Recall@k` divides "
                  "by min(|T|, k); recomputed with those definitions from maasrec's hit matrix "
                  "they agree as well:", "",
                  markdown_table(["experiment", "model", "seed", "peer metric", "peer value",
                                  "maasrec value", "|diff|", "same definition", "agree (1e-6)",
                                  "what is compared"], detail), ""]
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report of a compare suite as markdown."""
    if results.get("kind") == "scaling":
        from .scaling import scaling_markdown

        return scaling_markdown(results)
    suite = results["suite"]
    mach = results["machine"]
    lines = [f"# maasrec benchmark: `{suite['name']}` suite", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    n_runs = len(results.get("runs_info") or [])
    lines += [
        (f"Run {results['started']} → {results.get('finished', '?')} "
         f"({results.get('wall_s', 0) / 60:.1f} min)" if n_runs < 2 else
         f"{n_runs} runs, the first started {results['started']}, the last finished "
         f"{results.get('finished', '?')} ({results.get('wall_s', 0) / 60:.1f} min of runs in "
         f"all, see below)")
        + f" on {mach['cpu_model']}, "
        f"{mach['logical_cores']} logical cores, {mach['ram_gib']} GiB RAM, Python "
        f"{mach['python']}; load average at start {mach.get('loadavg')}, at end "
        f"{results.get('loadavg_end')}. Threads per model run: "
        f"{results['options']['threads']}.", "",
        "Protocol: splits made once by maasrec and written to CSV; every model trains on "
        "the train part in its own process (peers in their own virtual environments) with "
        "hyperparameters chosen beforehand on the validation part; at test time every "
        "library recommends the top "
        f"{max(suite['k'])} items excluding each user's train **and validation** items, and "
        "**all lists are scored by the same code** (`maasrec.metrics.evaluate_lists`, full "
        "ranking over the train items). Cells: mean ± std over seeds; best per column in "
        "bold. Times: fit = min / median over repeated fits; \"fit ÷ calib\" divides the "
        "fastest fit by a fixed numpy matrix product timed just before the run (load-"
        "normalised); peak MiB = the run's whole-process peak RSS (imports included).", "",
    ]
    if suite.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in suite["notes"]] + [""]
    vers = results.get("versions", {}).get("maasrec_env", {})
    peer_lines = []
    for lib, st in sorted(results.get("peers", {}).items()):
        if st.get("available"):
            v = st.get("versions", {})
            peer_lines.append(f"{lib} {v.get(lib)} (" + ", ".join(
                f"{p} {x}" for p, x in v.items() if p not in (lib,) and x) + ")")
        elif st.get("available") is None:
            peer_lines.append(f"{lib}: skipped")
        else:
            peer_lines.append(f"{lib}: **unavailable** — {st.get('error')}")
    lines += ["Versions: maasrec env: " + ", ".join(f"{p} {x}" for p, x in vers.items() if x)
              + ".", ""]
    if peer_lines:
        lines += ["Peers: " + "; ".join(peer_lines) + ".", ""]
    merged = runs_markdown(results)
    if merged:
        lines += [merged]
    first_run = (results.get("runs_info") or [{}])[0].get("id") if merged else None
    for e in results["experiments"]:
        lines += [experiment_markdown(e, suite, first_run), ""]
    ch = checks_markdown(results)
    if ch:
        lines += ["## Evaluation checks", "", ch]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_quality_vs_time(results: dict[str, Any], path: Path) -> Path | None:
    """Scatter of the primary metric against the fastest fit time, one panel per experiment."""
    plt = _pyplot()
    if plt is None:
        print("matplotlib is not installed: skipping plots (pip install matplotlib)")
        return None
    pm = results["suite"]["primary_metric"]
    exps = [e for e in results["experiments"] if any(s.get("metrics") for s in e["summary"])]
    if not exps:
        return None
    fig, axes = plt.subplots(1, len(exps), figsize=(5.5 * len(exps), 6.2), squeeze=False)
    for ax, e in zip(axes[0], exps):
        done = [s for s in e["summary"] if s.get("metrics")]
        done.sort(key=lambda s: -s["metrics"][pm]["mean"])
        for i, s in enumerate(done, 1):
            x = max(s["fit_time_s"]["min"], 1e-3)
            y = s["metrics"][pm]["mean"]
            ours = s["library"] == "maasrec"
            ax.scatter([x], [y], marker="o" if ours else "s", s=36,
                       color="tab:red" if ours else "tab:blue", label=f"{i} {s['model']}")
            ax.annotate(str(i), (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("fit time, s (fastest of repeats, log)")
        ax.set_ylabel(pm)
        ax.set_title(e["name"], fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=6.5,
                  frameon=False, handletextpad=0.3, columnspacing=1.0)
    fig.suptitle(f"{results['suite']['name']}: quality vs fit time (red: maasrec, blue: peers)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def keep_hand_written(old: str, new: str) -> str:
    """``new`` plus the ``## `` sections of ``old`` that ``new`` does not have.

    RESULTS.md holds the generated suite report and, after it, sections written by
    separate benchmarks (``bench_ease.py``, ``bench_defaults.py``, ...): a regenerated
    report keeps those, in their order, instead of deleting them.
    """
    heads = {line.strip() for line in new.splitlines() if line.startswith("## ")}
    kept, current = [], None
    for line in old.splitlines():
        if line.startswith("## "):
            current = [] if line.strip() not in heads else None
            if current is not None:
                kept.append(current)
        elif line.startswith("# "):
            current = None
        if current is not None:
            current.append(line)
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n\n".join("\n".join(k).strip("\n") for k in kept) + "\n"


def write_outputs(results: dict[str, Any], out_dir: Path, plots: bool = True,
                  results_md: Path | None = None, log=print) -> dict[str, Path]:
    """results.json, report.md (+ PNGs) in ``out_dir``; optionally copy the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "report.md"}
    if results.get("kind") == "scaling":  # slopes from the fits (also after a merge)
        from .scaling import recommend_slopes, slopes

        results["slopes"] = slopes(results.get("fits", []))
        results.update(recommend_slopes(results.get("recommend", [])))
    if plots:
        if results.get("kind") == "scaling":
            from .scaling import plot_scaling

            p = plot_scaling(results, out_dir / "scaling.png")
        else:
            p = plot_quality_vs_time(results, out_dir / "quality_vs_fit_time.png")
        if p is not None:
            paths["plot"] = p
            results["plots"] = sorted(set(results.get("plots", [])) | {p.name})
    paths["json"].write_text(json.dumps(_finite(results), indent=1, default=_json,
                                        allow_nan=False))
    md = render_markdown(results)
    if "plot" in paths:
        md += f"\n![plot]({paths['plot'].name})\n"
    paths["markdown"].write_text(md)
    if results_md is not None:
        text = md
        if "plot" in paths:
            rel = _relpath(paths["plot"], results_md.parent)
            text = text.replace(f"![plot]({paths['plot'].name})", f"![plot]({rel})")
        if results_md.exists():
            text = keep_hand_written(results_md.read_text(), text)
        results_md.write_text(text)
        paths["results_md"] = results_md
    for k, p in paths.items():
        log(f"wrote {k}: {p}")
    return paths


def _finite(o: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, np.floating):
        return _finite(float(o))
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _relpath(p: Path, start: Path) -> str:
    import os

    return os.path.relpath(p, start)


def _json(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
