"""The measurement kit of the tools: device names, timing, peak memory, other processes' CPU use.

``bench.tools.perf``, ``bench.tools.gpu_check`` and ``bench.tools.eval_memory`` measure with these and nothing
else, so a figure means the same in every report:

* ``time_interleaved``: phases timed in alternating rounds (they see the same machine load). Each phase gets its
  synchronised time (the device drained before the clock stops) and its enqueue time per step (the host's time
  to issue one step, measured after a drained device): a step whose enqueue time is close to its synchronised
  time is bound by the host (Python and kernel launches), not by the device.
* ``PeakMemory``: per phase, the absolute peak and the extra over what was resident when the phase began (CUDA:
  allocated bytes; CPU: resident set, whose high-water mark Linux resets through ``/proc/self/clear_refs``).
* ``OtherCpuUse``: CPU time other processes used during a run, as a share of all CPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"cpu: {model}, {torch.get_num_threads()} threads"


class OtherCpuUse:
    """CPU time that other processes used while the benchmark ran, as a share of all CPUs (Linux).

    Busy time of the whole host (``/proc/stat``) minus this process's own CPU time (``os.times``): unlike
    the load average, it neither lags behind an earlier job nor counts the benchmark's own threads.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            idle = fields[3] + fields[4]  # idle + iowait
            tick = os.sysconf("SC_CLK_TCK")
            own = os.times()
            return (sum(fields[:8]) - idle) / tick, own.user + own.system, time.monotonic()
        return None

    def share(self) -> float | None:
        """Other processes' CPU seconds / (wall seconds x CPUs) since construction, in [0, 1]."""
        end = self._sample()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return round(min(max(others / ((end[2] - self.start[2]) * (os.cpu_count() or 1)), 0.0), 1.0), 3)


def _status_mb(field: str) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


class PeakMemory:
    """Peak memory of a phase, absolute and as the extra over what was resident when ``reset`` was called.

    CUDA: allocated bytes (``max_memory_allocated`` against ``memory_allocated``). CPU: the resident set's
    high-water mark (VmHWM, reset by writing 5 to /proc/self/clear_refs) against VmRSS; where that reset is
    impossible the process-wide ``ru_maxrss`` (a running maximum) stands in and ``resettable`` is false.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.kind = "CUDA allocated" if self.cuda else "CPU resident set"
        self.resettable = True
        self.resident_at_reset = self.resident_mb()

    def resident_mb(self) -> float:
        if self.cuda:
            return torch.cuda.memory_allocated(self.device) / 2**20
        rss = _status_mb("VmRSS")
        return rss if rss is not None else self._maxrss_mb()

    @staticmethod
    def _maxrss_mb() -> float:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux

    def reset(self) -> None:
        """Start a phase: the peak counts from now, the extra from what is resident now."""
        if self.cuda:
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.resettable = False
        self.resident_at_reset = self.resident_mb()

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _status_mb("VmHWM")
        return hwm if hwm is not None else self._maxrss_mb()

    def phase(self) -> dict:
        """``{"peak_mb", "extra_mb"}`` since the last ``reset``."""
        peak = self.peak_mb()
        return {"peak_mb": round(peak, 1), "extra_mb": round(max(peak - self.resident_at_reset, 0.0), 1)}


def _merge_peak(a: dict | None, b: dict) -> dict:
    if a is None:
        return b
    return {"peak_mb": max(a["peak_mb"], b["peak_mb"]), "extra_mb": max(a["extra_mb"], b["extra_mb"])}


def time_interleaved(phases: dict, steps: int, warmup: int, rounds: int, device, memory: PeakMemory,
                     probes: int = 3) -> dict:
    """Time each ``fn(i)`` of ``phases`` for ``steps`` calls, split into ``rounds`` alternating rounds.

    Returns ``{name: {"seconds", "step_ms", "enqueue_ms", "peak_mb", "extra_mb"}}``: ``seconds`` is the
    synchronised time of the ``steps`` calls, ``step_ms`` its mean per call, ``enqueue_ms`` the median host
    time of one call issued on a drained device (``probes`` extra calls after the warm-up), and the memory
    figures the largest of the phase's rounds (warm-up included: allocator, optimizer state, compilation).
    """
    seconds = dict.fromkeys(phases, 0.0)
    peak: dict = dict.fromkeys(phases)
    enqueue: dict = {name: [] for name in phases}
    for name, fn in phases.items():  # warm-up, then the enqueue probes
        memory.reset()
        for i in range(warmup):
            fn(i)
        for i in range(warmup, warmup + probes):
            sync(device)
            t0 = time.perf_counter()
            fn(i)
            enqueue[name].append(time.perf_counter() - t0)
            sync(device)
        peak[name] = _merge_peak(peak[name], memory.phase())
    start = warmup + probes
    per_round = [steps // rounds + (r < steps % rounds) for r in range(rounds)]
    done = 0
    for n in per_round:
        for name, fn in phases.items():
            memory.reset()
            sync(device)
            t0 = time.perf_counter()
            for i in range(start + done, start + done + n):
                fn(i)
            sync(device)
            seconds[name] += time.perf_counter() - t0
            peak[name] = _merge_peak(peak[name], memory.phase())
        done += n
    return {name: {"seconds": seconds[name], "step_ms": round(1000 * seconds[name] / steps, 3),
                   "enqueue_ms": round(1000 * statistics.median(enqueue[name]), 3) if enqueue[name] else None,
                   **peak[name]}
            for name in phases}


def median_latency_ms(fn, runs: int, warmup: int, device) -> float:
    """Median synchronised wall time of ``fn()`` in ms over ``runs`` calls after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def write_results(result: dict, text: str, out: str | Path, stem: str, started: float) -> dict:
    """Write a tool's report as ``<stem>.md`` and its figures as ``<stem>.json`` under ``out`` (with the wall time
    since ``started``), print the report and where it went."""
    result["wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    print(f"wrote {out / f'{stem}.md'} and {out / f'{stem}.json'} ({result['wall_s']} s)")
    return result
