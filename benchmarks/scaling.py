"""The scaling suite: fit time and peak memory versus data size, on synthetic data.

For every size ``n`` (target interactions) a data set is drawn once with
:func:`maasrec.datasets.make_synthetic` (``n_items`` fixed, users grown so that
``n_users * density * n_items ~ n``) and saved as ``.npz``; every model is fitted on it
in its own process (``timing_repeats`` fits, fastest reported, each fit's extra peak RSS
measured from the RSS before the fit). The fitted log-log slope of fit time versus
interactions summarises the growth (1.0 = linear); it is given over all sizes and over
the largest decade only (fixed costs dominate the smallest sizes; the large-size regime is
what a user meets).

Recommend-all memory: ``recommend_model`` is fitted on the ``recommend_size`` data and
saved; then, each in a fresh process, it recommends to its first ``n`` users for every
``n`` in ``recommend_users``. The extra peak RSS should stay flat in ``n`` (maasrec
scores users in blocks of bounded size: ``block_users`` users per 128 MB float32 score
block); only the returned ``n x k`` arrays grow. The slope is reported over all ``n`` and
over ``n >= block_users`` (below one block the block itself grows with ``n``).

Results of a later run (e.g. one model added) merge into an earlier one with
:func:`merge_scaling` (``run scaling --models NAME --merge-into results.json``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import machine
from .config import ModelSpec, Suite
from .runner import REPO, RunOptions, calibrate, safe_name


def loglog_slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x) (None with fewer than 2 positive points)."""
    pts = [(a, b) for a, b in zip(x, y) if a and b and a > 0 and b > 0]
    if len(pts) < 2:
        return None
    lx = np.log([a for a, _ in pts])
    ly = np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def make_data(size: int, suite: Suite, path: Path, seed: int) -> dict[str, Any]:
    """Draw the synthetic data of one size (cached on disk)."""
    sc = suite.scaling
    assert sc is not None
    n_users = max(1, round(size / (sc.density * sc.n_items)))
    info_path = path.with_suffix(".json")
    key = {"size": size, "n_users": n_users, "n_items": sc.n_items, "density": sc.density,
           "n_factors": sc.n_factors, "seed": seed}
    if path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("key") == key:
            return info
    from maasrec.datasets import make_synthetic

    t0 = time.perf_counter()
    ds = make_synthetic(n_users=n_users, n_items=sc.n_items, density=sc.density,
                        n_factors=sc.n_factors, seed=seed, with_text=False,
                        with_timestamps=False)
    X = ds.interactions
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, users=X.user_vocab.ids[X.user_indices], items=X.item_vocab.ids[X.item_indices])
    info = {"key": key, "nnz": int(X.nnz), "n_users": int(X.n_users),
            "n_items": int(X.n_items), "generate_s": time.perf_counter() - t0}
    info_path.write_text(json.dumps(info))
    return info


def _worker(job: dict[str, Any], run_dir: Path, threads: int, timeout: float
            ) -> tuple[dict[str, Any] | None, machine.ProcResult]:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "meta.json").unlink(missing_ok=True)
    job = {**job, "meta": str(run_dir / "meta.json")}
    (run_dir / "job.json").write_text(json.dumps(job, indent=2))
    env = machine.thread_env(threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = machine.run_process([sys.executable, "-m", "benchmarks.worker",
                                str(run_dir / "job.json")], run_dir / "log.txt", env=env,
                               timeout=timeout, cwd=REPO)
    meta = None
    if proc.ok and (run_dir / "meta.json").is_file():
        meta = json.loads((run_dir / "meta.json").read_text())
    return meta, proc


def _fail(proc: machine.ProcResult) -> dict[str, Any]:
    return {"status": "timeout" if proc.timed_out else "error",
            "error": (f"timed out after {proc.seconds:.0f} s" if proc.timed_out
                      else f"exit code {proc.returncode}") + "\n" + proc.tail(10)}


def run_scaling(suite: Suite, opts: RunOptions) -> dict[str, Any]:
    """Run a scaling suite; returns the results document (``kind = "scaling"``)."""
    sc = suite.scaling
    assert sc is not None
    t0 = time.perf_counter()
    seed = (opts.seeds or suite.seeds)[0]
    threads = opts.threads or suite.threads
    base = opts.work_dir / safe_name(suite.name)
    results: dict[str, Any] = {
        "format": "maasrec-benchmark/1", "kind": "scaling", "suite": suite.to_dict(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine.machine_info(),
        "versions": {"maasrec_env": machine.package_versions(sys.executable,
                                                             machine.MAASREC_PACKAGES)},
        "options": {"threads": threads, "seed": seed, "models": opts.models},
        "data": {}, "fits": [], "recommend": [],
    }
    models = [m for m in sc.models
              if not opts.models or any(p.lower() in m.key.lower() for p in opts.models)]
    sizes = list(sc.sizes)
    rec_size = sc.recommend_size
    for size in sorted(set(sizes + ([rec_size] if sc.recommend_model else []))):
        opts.log(f"[scaling] data of ~{size:.0e} interactions ...")
        results["data"][str(size)] = make_data(size, suite, base / "data" / f"n{size}.npz", seed)
    for m in models:
        for size in sizes:
            info = results["data"][str(size)]
            run_dir = base / "fits" / safe_name(m.key) / f"n{size}"
            rec = _fit_record(m, size, info, base, run_dir, suite, threads, seed, save_to=None)
            results["fits"].append(rec)
            opts.log(f"  {m.key:<22s} nnz {info['nnz']:>10,}: " + (
                f"fit {rec['fit_time_s']:.2f}s  extra peak {rec.get('fit_peak_extra_mib') or 0:.0f} "
                f"MiB  (load {machine.loadavg()})" if rec["status"] == "ok" else rec["status"]))
            if rec["status"] != "ok" and rec["status"] == "timeout":
                opts.log(f"  {m.key}: timed out at {size:.0e}; skipping larger sizes")
                break
    results["slopes"] = slopes(results["fits"])
    if sc.recommend_model is not None:
        results["recommend"] = _recommend_runs(sc.recommend_model, rec_size, results, base,
                                               suite, threads, seed, opts)
        results.update(recommend_slopes(results["recommend"]))
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["wall_s"] = time.perf_counter() - t0
    results["loadavg_end"] = machine.loadavg()
    return results


def _fit_record(m: ModelSpec, size: int, info: dict[str, Any], base: Path, run_dir: Path,
                suite: Suite, threads: int, seed: int, save_to: Path | None) -> dict[str, Any]:
    job = {"kind": "scaling_fit", "model": m.model, "params": m.params, "seed": seed,
           "data": str(base / "data" / f"n{size}.npz"),
           "fit_repeats": m.timing_repeats or suite.timing_repeats,
           "repeat_budget_s": suite.repeat_budget_s,
           "save_to": None if save_to is None else str(save_to)}
    cal = calibrate(threads, run_dir / "calibration.log") if run_dir else {}
    meta, proc = _worker(job, run_dir, m.threads or threads, m.timeout_s or suite.timeout_s)
    rec: dict[str, Any] = {"model": m.key, "model_name": m.model, "params": m.params,
                           "size": size, "nnz": info["nnz"], "n_users": info["n_users"],
                           "calibration": cal, "loadavg": machine.loadavg(),
                           "status": "ok", "error": None,
                           "maxrss_mib_wait4": proc.maxrss_mib}
    if meta is None:
        rec.update(_fail(proc))
        return rec
    rec["fit_time_s"] = meta["fit_time_s"]
    rec["fit_times_s"] = meta["fit_times_s"]
    rec["fit_time_median_s"] = float(np.median(meta["fit_times_s"]))
    rec["fit_ratio"] = (meta["fit_time_s"] / cal["median_s"]) if cal.get("median_s") else None
    rec["fit_peak_extra_mib"] = meta.get("fit_peak_extra_mib")
    rec["rss_after_load_mib"] = meta.get("rss_after_load_mib")
    rec["peak_rss_mib"] = meta.get("peak_rss_mib")
    return rec


def _recommend_runs(m: ModelSpec, size: int, results: dict[str, Any], base: Path, suite: Suite,
                    threads: int, seed: int, opts: RunOptions) -> list[dict[str, Any]]:
    info = results["data"][str(size)]
    model_dir = base / "recommend_model" / safe_name(m.key)
    opts.log(f"[scaling] fitting {m.key} on ~{size:.0e} interactions for recommend-all ...")
    fit = _fit_record(ModelSpec(**{**m.__dict__, "timing_repeats": 1}), size, info, base,
                      base / "recommend_fit", suite, threads, seed, save_to=model_dir)
    if fit["status"] != "ok":
        return [{"status": fit["status"], "error": fit["error"], "n_users": None}]
    out = []
    k = suite.scaling.k if suite.scaling else 10
    for n in suite.scaling.recommend_users:
        if n > info["n_users"]:
            continue
        run_dir = base / "recommend" / f"u{n}"
        job = {"kind": "scaling_recommend", "model": m.model, "model_dir": str(model_dir),
               "n_users": n, "k": k}
        meta, proc = _worker(job, run_dir, threads, m.timeout_s or suite.timeout_s)
        rec: dict[str, Any] = {"n_users": n, "status": "ok", "error": None,
                               "maxrss_mib_wait4": proc.maxrss_mib}
        if meta is None:
            rec.update(_fail(proc))
        else:
            rec.update({c: meta.get(c) for c in ("recommend_time_s", "recommend_peak_extra_mib",
                                                 "output_mib", "rss_before_mib",
                                                 "peak_rss_mib", "block_users", "n_items")})
        out.append(rec)
        opts.log(f"  recommend {n:>8,} users: " + (
            f"{rec['recommend_time_s']:.2f}s, extra peak {rec['recommend_peak_extra_mib']:.1f} "
            f"MiB (output {rec['output_mib']:.1f} MiB)" if rec["status"] == "ok"
            else rec["status"]))
    return out


def recommend_slopes(rec: list[dict[str, Any]]) -> dict[str, Any]:
    """Log-log slopes of the recommend-all extra peak vs users: all points, and beyond one block."""
    ok = [r for r in rec if r["status"] == "ok"]
    block = next((r.get("block_users") for r in ok if r.get("block_users")), None)
    big = [r for r in ok if block is not None and r["n_users"] >= block]

    def slope(rows):
        return loglog_slope([r["n_users"] for r in rows],
                            [max(r["recommend_peak_extra_mib"] or 0, 1e-3) for r in rows])

    return {"recommend_slope": slope(ok), "recommend_block_users": block,
            "recommend_slope_beyond_block": slope(big) if len(big) >= 2 else None}


def slopes(fits: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: log-log slopes of fit time and fit memory, all sizes and the top decade."""
    out = {}
    for key in dict.fromkeys(f["model"] for f in fits):
        ok = sorted((f for f in fits if f["model"] == key and f["status"] == "ok"),
                    key=lambda f: f["nnz"])
        top = [f for f in ok if ok and f["nnz"] >= ok[-1]["nnz"] / 10.5]
        out[key] = {
            "fit_time": loglog_slope([f["nnz"] for f in ok], [f["fit_time_s"] for f in ok]),
            "fit_time_top_decade": (loglog_slope([f["nnz"] for f in top],
                                                 [f["fit_time_s"] for f in top])
                                    if len(top) >= 2 else None),
            "top_decade_nnz": [top[0]["nnz"], top[-1]["nnz"]] if len(top) >= 2 else None,
            "fit_peak_extra": loglog_slope([f["nnz"] for f in ok],
                                           [max(f.get("fit_peak_extra_mib") or 0, 1e-3)
                                            for f in ok]),
            "n_points": len(ok),
            "nnz_range": [ok[0]["nnz"], ok[-1]["nnz"]] if ok else None,
        }
    return out


def merge_scaling(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The fits (and recommend-all runs) of ``new`` merged into ``base``.

    A fit of the same model and size replaces the base one; the recommend-all runs of
    ``new``, when it has any, replace the base ones. Slopes are recomputed; ``runs_info``
    records each run (time, load, options) and every fit keeps its ``run_id``.
    """
    import copy

    from .report import MergeError

    if base["suite"].get("scaling", {}).get("n_items") != new["suite"].get("scaling", {}).get(
            "n_items") or base["suite"]["scaling"].get("density") != new["suite"][
            "scaling"].get("density"):
        raise MergeError("cannot merge scaling runs drawn from different synthetic data "
                         "(n_items or density differ)")
    for size, info in new.get("data", {}).items():
        old = base.get("data", {}).get(size)
        if old is not None and old.get("key") != info.get("key"):
            raise MergeError(f"cannot merge: the synthetic data of size {size} differs")
    out = copy.deepcopy(base)
    infos = out.get("runs_info") or [_run_info_scaling(base, "A")]
    for f in out["fits"]:
        f.setdefault("run_id", infos[0]["id"])
    for r in out.get("recommend", []):
        r.setdefault("run_id", infos[0]["id"])
    run_id = chr(ord("A") + len(infos))
    infos.append(_run_info_scaling(new, run_id))
    out["runs_info"] = infos
    fits = [dict(f, run_id=run_id) for f in new.get("fits", [])]
    keys = {(f["model"], f["size"]) for f in fits}
    out["fits"] = [f for f in out["fits"] if (f["model"], f["size"]) not in keys] + fits
    out["slopes"] = slopes(out["fits"])
    if new.get("recommend"):
        out["recommend"] = [dict(r, run_id=run_id) for r in new["recommend"]]
    out.update(recommend_slopes(out.get("recommend", [])))
    out["data"] = {**new.get("data", {}), **out.get("data", {})}
    out["suite"] = copy.deepcopy(new["suite"])
    out["finished"] = new.get("finished")
    out["loadavg_end"] = new.get("loadavg_end")
    out["wall_s"] = sum(i.get("wall_s") or 0.0 for i in infos)
    return out


def _run_info_scaling(doc: dict[str, Any], run_id: str) -> dict[str, Any]:
    loads = [f["loadavg"][0] for f in doc.get("fits", []) if f.get("loadavg")]
    return {"id": run_id, "started": doc.get("started"), "finished": doc.get("finished"),
            "wall_s": doc.get("wall_s"), "loadavg_start": doc.get("machine", {}).get("loadavg"),
            "loadavg_end": doc.get("loadavg_end"),
            "run_loadavg_1min": [min(loads), max(loads)] if loads else None,
            "options": doc.get("options"), "versions": doc.get("versions"),
            "models": sorted({f["model"] for f in doc.get("fits", [])}),
            "recommend": bool(doc.get("recommend"))}


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------
def scaling_markdown(results: dict[str, Any]) -> str:
    from .report import fmt_ratio, fmt_seconds, markdown_table

    suite = results["suite"]
    sc = suite["scaling"]
    mach = results["machine"]
    lines = [f"# maasrec benchmark: `{suite['name']}` suite", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    if suite.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in suite["notes"]] + [""]
    lines += [
        f"Run {results['started']} → {results.get('finished', '?')} "
        f"({results.get('wall_s', 0) / 60:.1f} min) on {mach['cpu_model']}, "
        f"{mach['logical_cores']} logical cores, {mach['ram_gib']} GiB RAM; load average at "
        f"start {mach.get('loadavg')}, at end {results.get('loadavg_end')}; "
        f"{results['options']['threads']} thread(s) per run.", "",
        f"Data: `maasrec.datasets.make_synthetic` with {sc['n_items']:,} items, density "
        f"{sc['density']}, {sc['n_factors']} planted factors; users grow with the size. "
        "Fit time = fastest of the repeated fits; \"÷ calib\" divides it by a fixed numpy "
        "matrix product timed just before; extra peak = the fit's peak RSS above the RSS "
        "before it (kernel high-water mark reset per phase).", "",
    ]
    vers = results.get("versions", {}).get("maasrec_env", {})
    lines += ["Versions: " + ", ".join(f"{p} {x}" for p, x in vers.items() if x) + ".", ""]
    infos = results.get("runs_info") or []
    if len(infos) > 1:
        rows = []
        for i in infos:
            ld = i.get("run_loadavg_1min")
            rows.append([i["id"], f"{i.get('started')} → {i.get('finished')}",
                         f"{(i.get('wall_s') or 0) / 60:.1f}",
                         "–" if not ld else f"{ld[0]:.1f}–{ld[1]:.1f}",
                         ", ".join(m.split(":")[-1] for m in i.get("models", []))
                         + ("; recommend-all" if i.get("recommend") else "")])
        lines += [f"This report merges {len(infos)} runs on the same synthetic data; rows of a "
                  f"later run are marked `[run X]`:", "",
                  markdown_table(["run", "started → finished", "minutes",
                                  "1-min load at fits", "what ran"], rows), ""]

    def _s(v):
        return "–" if v is None else f"{v:.2f}"

    rows = []
    for key, s in results.get("slopes", {}).items():
        top = s.get("top_decade_nnz")
        rows.append([key, str(s["n_points"]), _s(s["fit_time"]),
                     _s(s.get("fit_time_top_decade"))
                     + ("" if not top else f" ({top[0]:.1e}–{top[1]:.1e})"),
                     _s(s["fit_peak_extra"])])
    if rows:
        lines += ["Fitted log-log slopes versus interactions (1.0 = linear; the target is "
                  "≤ 1.1). All sizes, and the largest decade only (at the small sizes fixed "
                  "costs — imports aside, e.g. EASE's item-item inverse, which depends on "
                  "the catalogue, not on the interactions — dominate):", "",
                  markdown_table(["model", "sizes", "fit time slope, all sizes",
                                  "fit time slope, largest decade", "fit extra-memory slope"],
                                 rows), ""]
    rows = []
    first_run = infos[0]["id"] if len(infos) > 1 else None
    for f in results["fits"]:
        if first_run is not None and f.get("run_id") not in (None, first_run):
            f = {**f, "model": f"{f['model']} [run {f['run_id']}]"}
        if f["status"] == "ok":
            rows.append([f["model"], f"{f['nnz']:,}", f"{f['n_users']:,}",
                         f"{fmt_seconds(f['fit_time_s'])} / {fmt_seconds(f['fit_time_median_s'])}",
                         fmt_ratio(f.get("fit_ratio")),
                         "–" if f.get("fit_peak_extra_mib") is None
                         else f"{f['fit_peak_extra_mib']:.0f}",
                         "–" if f.get("peak_rss_mib") is None else f"{f['peak_rss_mib']:.0f}"])
        else:
            msg = (f.get("error") or "").strip().splitlines()
            rows.append([f["model"], f"{f['nnz']:,}", f"{f['n_users']:,}",
                         f"**{f['status']}**: {msg[-1] if msg else ''}", "", "", ""])
    lines += [markdown_table(["model", "interactions", "users", "fit s (min / med)",
                              "fit ÷ calib", "fit extra peak MiB", "process peak MiB"], rows), ""]
    rec = results.get("recommend") or []
    if rec:
        rm = sc.get("recommend_model") or {}
        rows = []
        for r in rec:
            if r["status"] == "ok":
                rows.append([f"{r['n_users']:,}", fmt_seconds(r["recommend_time_s"]),
                             f"{r['recommend_peak_extra_mib']:.1f}", f"{r['output_mib']:.1f}",
                             f"{r['peak_rss_mib']:.0f}"])
            else:
                rows.append([str(r.get("n_users")), f"**{r['status']}**", "", "", ""])
        slope = results.get("recommend_slope")
        block = results.get("recommend_block_users")
        beyond = results.get("recommend_slope_beyond_block")
        tag = ""
        if first_run is not None and rec[0].get("run_id") not in (None, first_run):
            tag = f" [run {rec[0]['run_id']}]"
        lines += [f"Recommend-all memory{tag} ({rm.get('model')} "
                  f"{json.dumps(rm.get('params', {}))} fitted on ~{sc['recommend_size']:.0e} "
                  f"interactions, top-{sc['k']}, default batching"
                  + ("" if block is None else f": {block:,} users per score block") + "); "
                  f"log-log slope of the extra peak vs users: {_s(slope)} over all points"
                  + ("" if block is None else f", {_s(beyond)} from one block on "
                     f"(≥ {block:,} users)") + " (0 = flat):", "",
                  markdown_table(["users", "seconds", "extra peak MiB", "of which output MiB",
                                  "process peak MiB"], rows), ""]
    return "\n".join(lines).rstrip() + "\n"


def plot_scaling(results: dict[str, Any], path: Path) -> Path | None:
    from .report import _pyplot

    plt = _pyplot()
    if plt is None:
        print("matplotlib is not installed: skipping plots (pip install matplotlib)")
        return None
    fits = [f for f in results["fits"] if f["status"] == "ok"]
    rec = [r for r in results.get("recommend", []) if r["status"] == "ok"]
    n_panels = 3 if rec else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.3))
    for key in dict.fromkeys(f["model"] for f in fits):
        pts = [f for f in fits if f["model"] == key]
        s = results["slopes"].get(key, {})
        lab = (f"{key.split(':')[-1]} (slope {s.get('fit_time') or math.nan:.2f}; top decade "
               f"{s.get('fit_time_top_decade') or math.nan:.2f})")
        axes[0].plot([f["nnz"] for f in pts], [f["fit_time_s"] for f in pts], "o-", label=lab)
        axes[1].plot([f["nnz"] for f in pts], [max(f.get("fit_peak_extra_mib") or 0, 0.1)
                                               for f in pts], "o-", label=key.split(":")[-1])
    if fits:  # a slope-1 guide through the median model's largest point
        x = np.array([min(f["nnz"] for f in fits), max(f["nnz"] for f in fits)], dtype=float)
        y1 = float(np.median([f["fit_time_s"] for f in fits if f["nnz"] == x[1]] or [1.0]))
        axes[0].plot(x, y1 * x / x[1], "k:", lw=1, label="slope 1 (linear)")
    for ax, yl in ((axes[0], "fit time, s"), (axes[1], "fit extra peak RSS, MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if rec:
        axes[2].plot([r["n_users"] for r in rec], [r["recommend_peak_extra_mib"] for r in rec],
                     "o-", label="extra peak")
        axes[2].plot([r["n_users"] for r in rec], [r["output_mib"] for r in rec], "s--",
                     label="returned arrays")
        block = results.get("recommend_block_users")
        if block:
            axes[2].axvline(block, color="grey", ls=":", lw=1, label=f"one score block ({block:,})")
        axes[2].set_xscale("log")
        axes[2].set_xlabel("users recommended to (one call)")
        axes[2].set_ylabel("MiB")
        axes[2].set_title("recommend-all memory", fontsize=9)
        axes[2].grid(alpha=0.3, which="both")
        axes[2].legend(fontsize=7)
    fig.suptitle(f"{results['suite']['name']}: scaling on synthetic data", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
