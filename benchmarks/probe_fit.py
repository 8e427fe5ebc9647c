r"""Does suggest_l2's probe fit its training labels? Relation 1's rule (a) on the probe, per setup.

    python benchmarks/probe_fit.py --out=/tmp/probe_fit                  # regimes preset, 3 draws
    python benchmarks/probe_fit.py --out=/tmp/pf --setups=digits_mse --draws=1   # a few seconds

For every setup of a reproduce preset (`experiments/configs/reproduce_{preset}.py`) and data
draw, runs suggest_l2's probe through the trainer (`l2reg.reproduction.probe.suggest` at the
setup's probe λ, probe length and budget, on the setup's runs' config: constant η, coupled L2)
and records its peak, why it falls, c, the suggested λ and relation 1's rule (a) on it: its
highest training accuracy against 1 − label noise − 10 points (`probe.measure`). A probe below
that bound is one relation 1 would exclude; suggest_l2 warns about it. Writes `results.json`
(one row per setup and draw, and each setup's range) and prints a table. Probes already in
`--out/probes` are reused.
"""

import argparse
import importlib
import json
import os
import time


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for results.json and the probes")
    parser.add_argument("--preset", default="regimes", help="reproduce preset whose setups run")
    parser.add_argument("--setups", default=None, help="comma-separated setup names (all)")
    parser.add_argument("--draws", type=int, default=3, help="data draws per setup")
    args = parser.parse_args()
    if args.draws < 1:
        parser.error(f"--draws must be ≥ 1, got {args.draws}")
    try:
        module = importlib.import_module(f"experiments.configs.reproduce_{args.preset}")
    except ModuleNotFoundError:
        parser.error(f"--preset {args.preset!r} has no experiments/configs/reproduce_*.py")
    args.config = module.get_config()
    names = list(args.config.setups)
    if args.setups is not None:
        asked = args.setups.split(",")
        unknown = [name for name in asked if name not in names]
        if unknown:
            parser.error(f"--setups {unknown} are not setups of {args.preset!r}: {names}")
        names = asked
    args.names = names
    if os.path.isfile(args.out):
        parser.error(f"--out {args.out!r} is a file, not a folder")
    return args


def main() -> None:
    args = _arguments()
    from absl import logging

    from l2reg import files, reproduction, versions
    from l2reg.reproduction import probe

    logging.set_verbosity(logging.WARNING)
    setups = {s.name: s for s in reproduction.Preset.from_config(args.config).setups}
    rows, start = [], time.perf_counter()
    print(f"{'setup':<22} draw  peak  fall         highest  bound  fits   c      λ")
    for name in args.names:
        setup = setups[name]
        for draw in range(args.draws):
            record = probe.suggest(
                reproduction.draw_config(setup.base_config(), draw),
                os.path.join(args.out, "probes", name, str(draw)),
                budget_steps=setup.num_steps,
                probe_l2=setup.probe_l2,
                probe_length=setup.probe_length,
            )
            row = {
                "setup": name,
                "role": setup.role,
                "draw": draw,
                **{
                    key: record[key]
                    for key in (
                        "probe_l2",
                        "probe_steps",
                        "clear_peak",
                        "fall",
                        "highest_train_accuracy",
                        "fit_threshold",
                        "fits_training_labels",
                        "c",
                        "suggested_l2",
                    )
                },
            }
            rows.append(row)
            fits = "yes" if row["fits_training_labels"] else "NO"
            print(
                f"{name:<22} {draw:>4}  {'clear' if row['clear_peak'] else 'none':<5} "
                f"{row['fall'] or '—':<12} {_percent(row['highest_train_accuracy']):>7}  "
                f"{_percent(row['fit_threshold']):>5}  {fits:<5}  {_number(row['c']):<6} "
                f"{_number(row['suggested_l2'])}",
                flush=True,
            )
    by_setup = {}
    for name in args.names:
        mine = [r for r in rows if r["setup"] == name]
        highest = [
            r["highest_train_accuracy"] for r in mine if r["highest_train_accuracy"] is not None
        ]
        by_setup[name] = {
            "highest_train_accuracy": [min(highest), max(highest)] if highest else None,
            "fit_threshold": mine[0]["fit_threshold"],
            "fits": sum(r["fits_training_labels"] for r in mine),
            "draws": len(mine),
        }
    seconds = time.perf_counter() - start
    results = {
        "preset": args.preset,
        "draws": args.draws,
        "rows": rows,
        "by_setup": by_setup,
        "seconds": seconds,
        "environment": versions.record(),
    }
    os.makedirs(args.out, exist_ok=True)
    files.write_atomic(os.path.join(args.out, "results.json"), json.dumps(results, indent=1))
    print(f"{len(rows)} probes in {seconds:.0f} s; wrote {os.path.join(args.out, 'results.json')}")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{100 * fraction:.1f}%"


if __name__ == "__main__":
    main()
