"""The long fault run: `.venv/bin/python -m tests.faults --trials 20` (see docs/reliability.md).

Each trial starts a fresh pipeline (private PostgreSQL, Tansu on S3, one process per
service), runs the load generator for --seconds while --faults faults are injected, waits
for catch-up and checks the invariants. Prints one row per trial and a total; exits 1
if any invariant failed.
"""
from __future__ import annotations

import argparse
import sys

from tests.faults.report import row, table
from tests.faults.trial import run_trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30, help="load (and faults) per trial")
    parser.add_argument("--rate", type=float, default=100, help="events/s from the generator")
    parser.add_argument("--faults", type=int, default=10, help="kills and restarts per trial (at least 6)")
    parser.add_argument("--kill-after-publish", type=int, default=8, metavar="N",
                        help="a projector kills itself between publishing and committing a batch "
                             "about every N batches (0: never)")
    parser.add_argument("--kills-max", type=int, default=3, help="such kills per service and trial")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    outcomes, errors = [], []
    for trial in range(args.trials):
        try:
            outcome = run_trial(args.seed + trial, args.seconds, args.rate, args.faults,
                                args.kill_after_publish, args.kills_max, check_oracle=True)
        except Exception as error:  # noqa: BLE001 - e.g. no catch-up in time: a failed trial, go on
            errors.append(f"trial {trial + 1}: {type(error).__name__}: {error}")
            print(errors[-1], flush=True)
            continue
        outcomes.append(outcome)
        print(row(trial + 1, outcome), flush=True)
    print(table(outcomes))
    bad = [o for o in outcomes if not (o.verdict.ok and o.oracle_checked)]
    for outcome in bad:
        print(outcome.verdict, "the check saw a phantom loss and double count:", outcome.oracle_checked)
    print(f"{len(errors)} trials did not finish" if errors else "every trial finished")
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
