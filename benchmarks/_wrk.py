"""``wrk`` as the load generator of the serving benchmarks.

`wrk <https://github.com/wg/wrk>`_ is a C HTTP/1.1 load generator (Debian/Ubuntu:
``apt-get install wrk``): keep-alive connections driven by one event loop, a few
microseconds of CPU per request, so on a small machine it measures the server rather
than itself (the asyncio generator of ``bench_serving.py`` costs a sizeable fraction of
the server's CPU per request). The Lua script below pre-formats one ``POST
/v1/recommend`` per known user (``{"users": [u], "k": K}``, the same bodies as the
Python generator), sends them round-robin from a given offset, and prints one JSON
line (prefix ``WRKJSON``) with the request count, the errors and latency percentiles.

``wrk`` runs for a fixed duration (``-d``), closed loop: ``-c`` connections, each
sending its next request when the previous answer arrived (concurrency ``c``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["LUA", "find_wrk", "run_wrk", "write_script"]

#: Lua script: ``wrk -s script.lua URL -- BODIES_FILE OFFSET`` (API key from the
#: ``BENCH_API_KEY`` environment variable, so it never shows in a process listing).
LUA = r"""
local reqs, n, i = {}, 0, 0
init = function(args)
  local bodies = {}
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  n = #bodies
  local off = tonumber(args[2] or "0")
  local headers = {["Content-Type"] = "application/json",
                   ["X-API-Key"] = os.getenv("BENCH_API_KEY")}
  for j = 1, n do
    reqs[j] = wrk.format("POST", "/v1/recommend", headers, bodies[((j - 1 + off) % n) + 1])
  end
end
request = function()
  i = i + 1
  return reqs[((i - 1) % n) + 1]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"mean_us":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


def find_wrk() -> str | None:
    """Path of the ``wrk`` executable, or None when it is not installed."""
    return shutil.which("wrk")


def write_script(folder: Path, bodies: list[bytes]) -> tuple[Path, Path]:
    """Write the Lua script and the bodies file (one JSON body a line) into ``folder``."""
    script = folder / "recommend.lua"
    script.write_text(LUA)
    data = folder / "bodies.txt"
    data.write_bytes(b"".join(b + b"\n" for b in bodies))
    return script, data


def run_wrk(wrk: str, url: str, script: Path, bodies: Path, *, concurrency: int,
            seconds: float, offset: int, env: dict, cpu: int | None = None,
            timeout_s: float = 10.0) -> dict:
    """One ``wrk`` run (one thread, ``concurrency`` connections) against ``url``.

    Parameters
    ----------
    cpu : int, optional
        Pin ``wrk`` to this CPU (``os.sched_setaffinity`` in the child).

    Returns
    -------
    dict
        ``requests``, ``seconds``, ``rps``, ``errors`` (connect, read, write, timeouts and
        non-2xx answers together), ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``,
        ``max_ms``.
    """
    cmd = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
           f"--timeout={max(1, round(timeout_s))}s", "-s", str(script), url, "--",
           str(bodies), str(offset)]
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=pre,
                       timeout=seconds + 120, check=False)
    line = next((x for x in r.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {r.returncode}): {r.stderr.strip()[-500:]} "
                           f"{r.stdout.strip()[-500:]}")
    w = json.loads(line[len("WRKJSON "):])
    secs = w["duration_us"] / 1e6
    return {"requests": w["requests"], "seconds": round(secs, 3),
            "rps": round(w["requests"] / secs, 1),
            "errors": sum(w[k] for k in ("connect_errors", "read_errors", "write_errors",
                                         "status_errors", "timeouts")),
            **{f"{p}_ms": round(w[f"{p}_us"] / 1000, 3)
               for p in ("p50", "p90", "p99", "mean", "max")}}
