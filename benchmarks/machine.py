"""Machine facts, memory probes, the timing calibration and subprocess runs.

Timing on a shared machine: every model run is preceded by a short calibration -- a
fixed numpy matrix product (``calibrate``), run in a subprocess with the same thread
settings -- so each fit time can be reported as a ratio to work done at the same moment
("fit / calib"). Each model run is its own subprocess, so peaks never mix: the run reports its own
whole-process peak (``getrusage``, kept across the phase resets of :class:`PhasePeak`)
and the harness also reads the child's ``ru_maxrss`` with ``os.wait4``.

``python -m benchmarks.machine`` prints the calibration as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")
CALIBRATION_N = 1024
CALIBRATION_REPEATS = 5


# ---------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------
def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where unsupported)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and the load at the time of the call."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        affinity = None
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "cores_available": affinity,
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": loadavg(),
    }


MAASREC_PACKAGES = ("maasrec", "numpy", "scipy", "pandas", "torch", "faiss-cpu")
PEER_PACKAGES = {
    "implicit": ("implicit", "numpy", "scipy", "pandas", "threadpoolctl"),
    "lenskit": ("lenskit", "torch", "numpy", "scipy", "pandas", "pyarrow"),
    "cornac": ("cornac", "torch", "tensorflow-cpu", "keras", "numpy", "scipy", "pandas"),
    "recbole": ("recbole", "torch", "numpy", "scipy", "pandas", "setuptools"),
}
_VERSIONS_SNIPPET = (
    "import json, sys, platform\n"
    "from importlib import metadata\n"
    "out = {'python': platform.python_version()}\n"
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        out[p] = metadata.version(p)\n"
    "    except metadata.PackageNotFoundError:\n"
    "        out[p] = None\n"
    "print(json.dumps(out))\n"
)


def package_versions(python: str, packages: tuple[str, ...]) -> dict[str, Any]:
    """Versions of ``packages`` in the environment of the interpreter ``python``."""
    try:
        out = subprocess.run([python, "-c", _VERSIONS_SNIPPET, *packages], capture_output=True,
                             text=True, timeout=120, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def git_state(repo: str | Path) -> dict[str, Any]:
    """Commit of the checkout and whether maasrec's or the harness's files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.rstrip("\n")

    try:
        dirty = git("status", "--porcelain", "--", "src", "benchmarks").splitlines()
        return {"commit": git("rev-parse", "HEAD").strip(),
                "modified_files": [line[3:] for line in dirty if not line.startswith("??")]}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------
# memory of the current process
# ---------------------------------------------------------------------------
def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float | None:
    """Current resident set size in MiB (None off Linux)."""
    v = _status_kib("VmRSS")
    return None if v is None else v / 1024.0


_HWM_SEEN_KIB = 0.0  # highest VmHWM read before a PhasePeak reset it


def _note_hwm() -> None:
    global _HWM_SEEN_KIB
    v = _status_kib("VmHWM")
    if v is not None:
        _HWM_SEEN_KIB = max(_HWM_SEEN_KIB, v)


def peak_rss_mib() -> float:
    """Peak resident set size of this whole process so far, in MiB.

    ``getrusage`` and ``VmHWM`` both follow the kernel's high-water mark, which
    :class:`PhasePeak` resets; the highest mark seen before each reset is kept.
    """
    import resource

    _note_hwm()
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(ru, _HWM_SEEN_KIB) / 1024.0


class PhasePeak:
    """Peak RSS reached inside a ``with`` block, above the RSS at entry.

    Resets the kernel's high-water mark (``/proc/self/clear_refs`` = 5, Linux >= 4.0)
    on entry, so an earlier peak (e.g. while loading data) does not hide this one.
    ``extra_mib`` is None where the reset is unsupported.
    """

    def __enter__(self) -> PhasePeak:
        _note_hwm()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.ok = True
        except OSError:
            self.ok = False
        self.start_mib = rss_mib()
        self.peak_mib: float | None = None
        self.extra_mib: float | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.ok:
            return
        _note_hwm()
        hwm = _status_kib("VmHWM")
        self.peak_mib = None if hwm is None else hwm / 1024.0
        if self.peak_mib is not None and self.start_mib is not None:
            self.extra_mib = max(0.0, self.peak_mib - self.start_mib)


# ---------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------
def calibrate(n: int = CALIBRATION_N, repeats: int = CALIBRATION_REPEATS) -> dict[str, Any]:
    """Seconds of a fixed float64 ``n x n`` matrix product (min and median of repeats)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    a @ b  # warm-up (thread pool start)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return {"n": n, "times_s": times, "min_s": min(times),
            "median_s": float(np.median(times)), "loadavg": loadavg()}


# ---------------------------------------------------------------------------
# subprocesses
# ---------------------------------------------------------------------------
def thread_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment with every BLAS/OpenMP thread variable set to ``threads``."""
    env = dict(os.environ if base is None else base)
    for v in THREAD_ENV_VARS:
        env[v] = str(threads)
    env["PYTHONHASHSEED"] = "0"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


@dataclass
class ProcResult:
    """How a subprocess ended."""

    returncode: int | None
    seconds: float
    maxrss_mib: float | None
    timed_out: bool
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, n: int = 25) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def run_process(cmd: list[str], log: Path, env: dict[str, str] | None = None,
                timeout: float | None = None, cwd: str | Path | None = None) -> ProcResult:
    """Run ``cmd`` (stdout+stderr to ``log``) and measure its own peak RSS with ``wait4``.

    On timeout the child's process group (and only it) is killed.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        timed_out = False
        status = ru = None
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    if timed_out:
        with open(log, "a") as out:
            out.write(f"\nKILLED after {timeout:.0f} s timeout\n")
    return ProcResult(returncode=proc.returncode, seconds=time.perf_counter() - t0,
                      maxrss_mib=None if ru is None else ru.ru_maxrss / 1024.0,
                      timed_out=timed_out, log=log)


def main(argv: list[str] | None = None) -> int:
    """Print :func:`calibrate` as JSON (run with the benchmark's thread settings)."""
    args = sys.argv[1:] if argv is None else argv
    repeats = int(args[0]) if args else CALIBRATION_REPEATS
    print(json.dumps(calibrate(repeats=repeats)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
