#!/usr/bin/env python3
"""Load simulator entry point kept for the original command line.

    python scripts/simulate.py --users 50 --rooms 5 --duration 120

runs the Rust load simulator `nebula-bench` (crates/bench) with the same arguments: a prebuilt
target/release/nebula-bench when there is one, otherwise `cargo run --release -p nebula-bench`.
Every argument is passed through unchanged; `--help` lists them (scenarios, rates, --json …).
Start the server with RATE_LIMIT_AUTH_PER_MINUTE=0 RATE_LIMIT_MESSAGES_PER_SECOND=0 first.
Set NEBULA_BENCH_BUILD=1 to always go through cargo (rebuilding if the sources changed).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command(args):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "release" / "nebula-bench"
    if binary.is_file() and os.environ.get("NEBULA_BENCH_BUILD") != "1":
        return [str(binary), *args]
    cargo = shutil.which("cargo")
    if cargo is None:
        sys.exit("simulate.py: neither target/release/nebula-bench nor cargo was found")
    return [cargo, "run", "--quiet", "--release", "-p", "nebula-bench", "--", *args]


def main():
    argv = command(sys.argv[1:])
    os.chdir(ROOT)
    if os.name == "posix":
        # Become the simulator: Ctrl-C then reaches it alone, and it still prints its report
        # (a Python parent would be interrupted too and kill it).
        os.execv(argv[0], argv)
    return subprocess.call(argv)


if __name__ == "__main__":
    sys.exit(main())
