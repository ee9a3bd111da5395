"""Start-up time of the image: from `docker run` to /healthz answering 200.

    python tools/image_startup.py [IMAGE] [RUNS]      (default wfcrawl:image-test, 5 runs)

Each run starts `wfcrawl serve` on the host network with PORT=0 (the kernel picks the
port; serve prints it), polls its log for the URL and then /healthz every 10 ms, and
removes the container. Prints each time and the median (docs/deploy.md).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import urllib.request


def one(image: str) -> float:
    start = time.monotonic()
    name = subprocess.run(
        ["docker", "run", "-d", "--network", "host", "-e", "PORT=0", "-e", "WFCRAWL_API_KEYS=probe:" + "0" * 64,
         image, "wfcrawl", "serve", "--host", "127.0.0.1"], capture_output=True, text=True, check=True,
    ).stdout.strip()
    try:
        url = None
        while time.monotonic() - start < 120:
            if url is None:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
                found = [line for line in logs.splitlines() if "listening on" in line]
                url = found[0].rsplit(" ", 1)[-1] if found else None
            else:
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                        if resp.status == 200:
                            return time.monotonic() - start
                except OSError:
                    pass
            time.sleep(0.01)
        raise RuntimeError(f"{image} did not answer /healthz in 120 s")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def main() -> None:
    image = sys.argv[1] if len(sys.argv) > 1 else "wfcrawl:image-test"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    times = [one(image) for _ in range(runs)]
    print("start-up to /healthz (s):", " ".join(f"{t:.2f}" for t in times), f"median {statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
