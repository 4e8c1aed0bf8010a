"""A projector process for the crash tests: `python -m tests.contract.counting_worker [--kill-after N]`."""
import argparse

from services.runtime.bootstrap import bootstrap_runtime
from tests.contract.counting import CountingHandler

parser = argparse.ArgumentParser()
parser.add_argument("--kill-after", type=int, default=None)
args = parser.parse_args()
runtime = bootstrap_runtime()
runtime.projector(CountingHandler(kill_after=args.kill_after)).run()
