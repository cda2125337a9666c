"""One consortium member as its own process, for `guardians bench intel`: for each trial's
collection it announces it is ready, waits for the indicator (long-poll, or polling at a fixed
interval from a random phase), parses and compiles it, and prints the wall-clock time it was
protected.

Usage: python -m guardians.bench.intel_member BASE_URL MODE INTERVAL CID [CID ...]
"""

from __future__ import annotations

import random
import sys
import time

import httpx

from guardians.engine.taxii import TAXII
from guardians.intel.rules import FlowSignature


def main(argv: list[str]) -> int:
    base, mode, interval, cids = argv[0], argv[1], float(argv[2]), argv[3:]
    rng = random.Random()
    with httpx.Client(headers={"Accept": TAXII}, timeout=60) as client:
        for i, cid in enumerate(cids):
            url = f"{base}/api/collections/{cid}/objects/"
            print(f"ready {i}", flush=True)
            if mode == "hub":
                time.sleep(rng.random() * interval)
            while True:
                params = {"wait": "30"} if mode == "guardians" else {}
                objs = client.get(url, params=params).json().get("objects", [])
                if objs:
                    FlowSignature.from_pattern(objs[0]["pattern"], "new")  # protected now
                    print(f"got {i} {time.time():.6f}", flush=True)
                    break
                if mode == "hub":
                    time.sleep(interval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
