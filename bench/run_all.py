"""Run every benchmark in bench/ and print one JSON line per benchmark (``make bench``).

Each benchmark is a script printing one JSON object; this runner adds its name and wall
time. Long benchmarks take the shared heavy-job lock themselves where they need it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    for script in sorted(HERE.glob("bench_*.py")):
        t = time.perf_counter()
        res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "{}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            data = {"raw": line}
        if res.returncode != 0:
            failed += 1
            data["error"] = res.stderr.strip().splitlines()[-1:] or ["failed"]
        print(
            json.dumps({"bench": script.stem, "seconds": round(time.perf_counter() - t, 1), **data})
        )
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
