"""`make bench`: every benchmark, each in its own process, outputs one after another.

    .venv/bin/python bench/run.py [--only billing,core,list,pdf,load,webhooks] [--skip load]

Each benchmark uses its own scratch PostgreSQL database on 127.0.0.1:5432; see
docs/benchmarks-core.md. Not part of the test suite.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = {
    "billing": "bench/billing_run.py",
    "core": "bench/core_bench.py",
    "list": "bench/list_page.py",
    "pdf": "bench/pdf_bench.py",
    "load": "bench/load_run.py",
    "webhooks": "bench/webhook_intake.py",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated names")
    parser.add_argument("--skip", default="", help="comma-separated names")
    args = parser.parse_args()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    skipped = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = (set(chosen) | skipped) - set(BENCHES)
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}; know {', '.join(BENCHES)}"
        )
    failed = []
    for name in chosen:
        if name in skipped:
            continue
        script = ROOT / BENCHES[name]
        if not script.exists():
            print(f"== {name}: {BENCHES[name]} not present, skipped ==\n", flush=True)
            continue
        print(f"== {name}: {BENCHES[name]} ==", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], cwd=ROOT).returncode
        print(
            f"== {name}: exit {code} after {time.perf_counter() - started:.0f} s ==\n", flush=True
        )
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
