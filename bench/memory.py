"""Peak resident memory and time of one whole command (e.g. a ``dpaudit train`` run).

Runs the command as a child process, samples its resident set (``VmRSS`` in
``/proc/<pid>/status``, Linux) every ``--interval`` seconds, and reports the peak RSS the
kernel recorded for it (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), its wall time and CPU time
(user + system), and the RSS trace at a few points of the run (to tell growth from a one-off
peak). ``--mmap-threshold`` sets ``$DPAUDIT_MMAP_THRESHOLD`` for the child (bytes; 0 leaves
glibc's dynamic threshold alone; see dpaudit/training/memory.py). Not a test.

    python bench/memory.py --json rss.json -- dpaudit train --dataset mnist \\
        --data-dir ../shared/datasets --epsilon 2 --threads 1 --out /tmp/mnist.pt
    python bench/memory.py --mmap-threshold 0 -- dpaudit train --dataset mnist \\
        --data-dir ../shared/datasets --epsilon 2 --threads 1 --epochs 3 --out /tmp/m.pt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run(cmd: list[str], env: dict[str, str], interval: float) -> dict:
    t0 = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a progress bar would fill it and block
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    trace: list[tuple[float, float]] = []
    while proc.poll() is None:
        rss = _rss_mb(proc.pid)
        if rss:  # None / 0 while the child starts or after it exited
            trace.append((time.perf_counter() - t0, rss))
        time.sleep(interval)
    wall = time.perf_counter() - t0
    log.seek(0)
    err = log.read()
    log.close()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    per_mb = 1024.0 * 1024.0 if platform.system() == "Darwin" else 1024.0  # ru_maxrss: bytes on macOS, KiB on Linux
    points = {}
    for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
        if trace:
            points[f"{int(frac * 100)}%"] = round(trace[min(len(trace) - 1, int(frac * (len(trace) - 1)))][1], 1)
    return {"command": cmd, "returncode": proc.returncode, "wall_s": round(wall, 1),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
            "peak_rss_mb": round(ru.ru_maxrss / per_mb, 1),
            "sampled_peak_rss_mb": round(max((r for _, r in trace), default=0.0), 1),
            "rss_trace_mb": points, "stderr_tail": err[-2000:],
            "mmap_threshold": env.get("DPAUDIT_MMAP_THRESHOLD", "default")}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--mmap-threshold", default=None, help="bytes, for $DPAUDIT_MMAP_THRESHOLD (0: glibc default)")
    ap.add_argument("--interval", type=float, default=1.0, help="RSS sampling interval, seconds")
    ap.add_argument("--json", default=None)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("give the command after --")
    if a.json:
        from dpaudit.io import check_writable

        check_writable(a.json)
    env = dict(os.environ)
    if a.mmap_threshold is not None:
        env["DPAUDIT_MMAP_THRESHOLD"] = str(a.mmap_threshold)
    out = run(cmd, env, a.interval)
    print(json.dumps({k: v for k, v in out.items() if k != "stderr_tail"}, indent=2))
    if out["returncode"] != 0:
        print(out["stderr_tail"], file=sys.stderr)
    if a.json:
        from dpaudit.io import atomic_write_text

        atomic_write_text(a.json, json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
