"""``python -m benchmarks`` (also ``maasrec bench`` from a source checkout).

Commands::

    run SUITE|FILE.toml   run a suite (quick, standard, scaling) or an experiment file
    tune SUITE|FILE.toml  grid search on the validation part (models with a ``grid``)
    report RESULTS.json   re-render report.md (and plots) from a results file
    merge BASE.json NEW.json   merge the runs of NEW into BASE (models added later)
    list                  suites, their experiments/models, and which peer venvs exist
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import ConfigError, available_suites, load_suite
from .runner import DEFAULT_WORK, HERE, RunOptions, check_peer, default_peers_dir, safe_name


def _csv(s: str | None) -> list[str] | None:
    if s is None:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", help=f"suite name ({', '.join(available_suites())}) or a path "
                                 f"to an experiment .toml file")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK,
                   help=f"work directory for splits, lists and logs (default {DEFAULT_WORK}, "
                        f"git-ignored)")
    p.add_argument("--peers-dir", type=Path, default=None,
                   help="folder holding the peer venvs <dir>/<library>/bin/python (default: "
                        "$MAASREC_PEERS_DIR, else /tmp/peers if it exists, else "
                        "/tmp/maasrec-peers)")
    p.add_argument("--data-home", default=None,
                   help="folder with ml-100k/, ml-1m/, amazon-beauty/ (default: maasrec's "
                        "search order, $MAASREC_DATA first)")
    p.add_argument("--experiments", default=None, help="comma-separated experiment names")
    p.add_argument("--models", default=None,
                   help="comma-separated substrings of model labels to run (e.g. EASE,implicit); "
                        "a whole label (e.g. maasrec:BPRMF) selects that model only")
    p.add_argument("--peers", default=None,
                   help="comma-separated peer libraries to run (default: all in the suite)")
    p.add_argument("--skip-peers", action="store_true", help="run maasrec models only")
    p.add_argument("--threads", type=int, default=None, help="override the suite's threads")
    p.add_argument("-q", "--quiet", action="store_true")


def _options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        work_dir=args.work, out_dir=getattr(args, "out", None),
        peers_dir=args.peers_dir or default_peers_dir(), data_home=args.data_home,
        peers=None if args.peers is None else set(_csv(args.peers) or []),
        skip_peers=args.skip_peers,
        experiments=None if args.experiments is None else set(_csv(args.experiments) or []),
        models=_csv(args.models),
        seeds=None if getattr(args, "seeds", None) is None else tuple(args.seeds),
        threads=args.threads, plots=not getattr(args, "no_plots", False), quiet=args.quiet,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from .report import write_outputs
    from .runner import run_suite

    suite = load_suite(args.suite)
    opts = _options(args)
    out = args.out or (opts.work_dir / safe_name(suite.name) / "report")
    opts.log(f"suite {suite.name} ({suite.source}); work {opts.work_dir}; report {out}; "
             f"peers {opts.peers_dir}")
    t0 = time.perf_counter()
    results = run_suite(suite, opts)
    if args.merge_into is not None:
        from .report import write_outputs as _write

        # keep this run's own results too, then merge them into the base document
        _write(results, Path(out) / "runs" / time.strftime("%Y%m%dT%H%M%S"),
               plots=False, log=opts.log)
        results = _merge_files(args.merge_into, results)
        if args.out is None:
            out = Path(args.merge_into).parent
    results_md = HERE / "RESULTS.md" if args.update_results_md else None
    write_outputs(results, Path(out), plots=not args.no_plots, results_md=results_md,
                  log=opts.log)
    opts.log(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .runner import tune_experiment

    suite = load_suite(args.suite)
    opts = _options(args)
    seed = args.seed if args.seed is not None else suite.seeds[0]
    results = []
    for exp in suite.experiments:
        if opts.experiments is not None and exp.name not in opts.experiments:
            continue
        results.append(tune_experiment(exp, suite, opts, seed))
    names = "-".join(safe_name(r["experiment"]) for r in results) or "none"
    out = args.out or (opts.work_dir / safe_name(suite.name) / "tune" / f"{names}-seed{seed}.json")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    pm = suite.primary_metric
    print(f"\nbest on validation ({pm}, seed {seed}); paste into the suite file:")
    for r in results:
        for key, m in r["models"].items():
            b = m["best"]
            if b is None:
                print(f"  [{r['experiment']}] {key}: no successful run")
                continue
            params = ", ".join(f"{k} = {json.dumps(v)}" for k, v in b["params"].items())
            grid = "; ".join(
                f"{json.dumps(x['params'])}: "
                + ("–" if x['valid_' + pm] is None else f"{x['valid_' + pm]:.4f}")
                for x in m["rows"])
            print(f"  [{r['experiment']}] {key}: params = {{ {params} }}   "
                  f"# valid {pm} {b['valid_' + pm]:.4f}; grid: {grid}")
    print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_outputs

    results = json.loads(Path(args.results).read_text())
    out = Path(args.out) if args.out else Path(args.results).parent
    results_md = HERE / "RESULTS.md" if args.update_results_md else None
    write_outputs(results, out, plots=not args.no_plots, results_md=results_md)
    return 0


def _merge_files(base_path: Path | str, new: dict) -> dict:
    from .report import MergeError, merge_results

    try:
        base = json.loads(Path(base_path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the results to merge into ({base_path}): {exc}") from exc
    try:
        return merge_results(base, new)
    except MergeError as exc:
        raise ConfigError(str(exc)) from exc


def cmd_merge(args: argparse.Namespace) -> int:
    from .report import write_outputs

    try:
        new = json.loads(Path(args.new).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {args.new}: {exc}") from exc
    results = _merge_files(args.base, new)
    if args.notes_from:  # notes written after the runs (what is missing, budgets)
        cur = load_suite(args.notes_from).to_dict()
        results["suite"]["notes"] = cur.get("notes", [])
        results["suite"]["description"] = cur.get("description", "")
    out = Path(args.out) if args.out else Path(args.base).parent
    results_md = HERE / "RESULTS.md" if args.update_results_md else None
    write_outputs(results, out, plots=not args.no_plots, results_md=results_md)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    peers_dir = args.peers_dir or default_peers_dir()
    for name in available_suites():
        try:
            s = load_suite(name)
        except ConfigError as exc:
            print(f"{name}: INVALID: {exc}")
            continue
        print(f"{name} ({s.kind}): {s.description.strip().splitlines()[0] if s.description else ''}")
        for e in s.experiments:
            print(f"  {e.name}: {e.dataset.label}, {e.split.describe()}, seeds {list(e.seeds)}")
            print("    " + ", ".join(m.key for m in e.models))
        if s.scaling is not None:
            print("  sizes " + ", ".join(f"{x:.0e}" for x in s.scaling.sizes) + "; models "
                  + ", ".join(m.key for m in s.scaling.models))
    print(f"\npeer venvs in {peers_dir}:")
    for lib in ("implicit", "lenskit", "cornac", "recbole"):
        st = check_peer(peers_dir, lib) if args.check else {
            "available": (peers_dir / lib / "bin" / "python").exists()}
        extra = ""
        if st.get("versions"):
            extra = f" ({lib} {st['versions'].get(lib)})"
        elif st.get("error"):
            extra = f" ({st['error']})"
        print(f"  {lib}: {'yes' if st['available'] else 'NO'}{extra}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="maasrec benchmark suite: maasrec side by side "
                                            "with implicit, LensKit, Cornac and RecBole on the "
                                            "same splits, scored by the same code.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a suite or experiment file")
    _common(r)
    r.add_argument("--seeds", type=int, nargs="+", default=None, help="override the seeds")
    r.add_argument("--out", type=Path, default=None,
                   help="report directory (default <work>/<suite>/report)")
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--update-results-md", action="store_true",
                   help="also write the report to benchmarks/RESULTS.md")
    r.add_argument("--merge-into", type=Path, default=None, metavar="RESULTS.json",
                   help="merge this run's rows into an earlier run's results (same splits; "
                        "a model+seed run here replaces the earlier one) and write the merged "
                        "report (default: next to RESULTS.json); this run alone is kept in "
                        "<out>/runs/")
    r.set_defaults(func=cmd_run)
    t = sub.add_parser("tune", help="grid search on the validation part (models with `grid`)")
    _common(t)
    t.add_argument("--seed", type=int, default=None, help="split/model seed (default: first)")
    t.add_argument("--out", type=Path, default=None, help="tuning JSON to write")
    t.set_defaults(func=cmd_tune)
    rep = sub.add_parser("report", help="re-render report.md and plots from results.json")
    rep.add_argument("results")
    rep.add_argument("--out", default=None)
    rep.add_argument("--no-plots", action="store_true")
    rep.add_argument("--update-results-md", action="store_true")
    rep.set_defaults(func=cmd_report)
    mg = sub.add_parser("merge", help="merge the runs of NEW.json into BASE.json (one table "
                                      "per experiment, rows marked by run)")
    mg.add_argument("base")
    mg.add_argument("new")
    mg.add_argument("--out", default=None, help="report directory (default: BASE's folder)")
    mg.add_argument("--no-plots", action="store_true")
    mg.add_argument("--notes-from", default=None, metavar="SUITE",
                    help="take the report notes and description from this suite file now "
                         "(e.g. standard), not from the runs")
    mg.add_argument("--update-results-md", action="store_true")
    mg.set_defaults(func=cmd_merge)
    li = sub.add_parser("list", help="suites, experiments, models and peer venvs")
    li.add_argument("--peers-dir", type=Path, default=None)
    li.add_argument("--check", action="store_true", help="import each peer library")
    li.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
