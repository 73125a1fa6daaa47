"""What the machine is, and how busy other work kept it while we measured.

A latency or a throughput figure taken while other processes compete for the cores is not a
figure. :class:`CpuWatch` measures, from Linux's ``/proc/stat``, how many cores *other*
processes (and the hypervisor, as steal time) kept busy during a measurement; :func:`is_busy`
is the one rule every table, plot, lesson and training run uses to say "the machine was busy".
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

# Other processes holding a tenth of the cores while we time already preempt our intra-op
# threads now and then, and each preemption stalls a whole forward pass (or training step).
BUSY_OTHER_FRACTION = 0.1
# Without a measurement (not Linux), a load average over half the cores means other work holds
# a core's worth of threads per two cores, which preempts ours.
BUSY_LOAD_FRACTION = 0.5


@dataclass(frozen=True)
class Contention:
    """How busy the machine was during a measurement.

    Attributes:
        other_cpu_cores: cores that other processes kept busy on average (None: unknown).
        steal_cpu_cores: cores the hypervisor took for other guests (None: unknown).
        load_avg_1min_before: the 1-minute load average when the measurement started.
        load_avg_1min_after: the same when it ended.
        cpu_count: logical CPUs.
    """

    other_cpu_cores: float | None
    steal_cpu_cores: float | None
    load_avg_1min_before: float | None
    load_avg_1min_after: float | None
    cpu_count: int | None


def is_busy(c: Contention) -> bool:
    """The one "machine was busy" rule (see the module constants)."""
    if not c.cpu_count:
        return False
    if c.other_cpu_cores is not None:  # measured while we worked: better than a lagging average
        return c.other_cpu_cores > BUSY_OTHER_FRACTION * c.cpu_count
    load = c.load_avg_1min_before
    return load is not None and load > BUSY_LOAD_FRACTION * c.cpu_count


def busy_note(c: Contention) -> str:
    """``other processes kept 0.52 cores busy (busy machine: expect noise)``, or the load."""
    if c.other_cpu_cores is not None:
        note = f"other processes kept {c.other_cpu_cores:.2f} of {c.cpu_count} cores busy"
    elif c.load_avg_1min_before is not None:
        note = f"load average {c.load_avg_1min_before} on {c.cpu_count} CPUs"
    else:
        note = "machine load unknown"
    return note + (" (busy machine: expect noise)" if is_busy(c) else "")


class CpuWatch:
    """Measures :class:`Contention` from its creation to :meth:`stop` (the CPU time of this
    process and of the children it waited for is subtracted, so only other work counts)."""

    def __init__(self) -> None:
        self._load = load_average()
        self._before = _cpu_snapshot()

    def stop(self) -> Contention:
        after = _cpu_snapshot()
        before = self._before
        others = steal = None
        if before is not None and after is not None and after[0] > before[0]:
            wall = after[0] - before[0]
            busy_others = (after[1] - before[1]) - (after[3] - before[3])
            others = round(max(0.0, busy_others) / wall, 2)
            steal = round((after[2] - before[2]) / wall, 2)
        return Contention(others, steal, self._load, load_average(), os.cpu_count())


def _cpu_snapshot() -> tuple[float, float, float, float] | None:
    """(wall s, machine busy CPU s, stolen CPU s, our CPU s), from /proc/stat; "our" is this
    process and the children it has waited for (loader workers, benchmarked commands)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    hz = os.sysconf("SC_CLK_TCK")
    busy = (user + nice + system + irq + softirq) / hz
    ours = os.times()
    own = ours.user + ours.system + ours.children_user + ours.children_system
    return time.perf_counter(), busy, steal / hz, own


def load_average() -> float | None:
    """The 1-minute load average (other work on the machine), where the OS reports one."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def cpu_name() -> str:
    """The CPU model as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# How long a look at the machine takes before a training run picks its thread count: long
# enough to see a busy core, short against a run.
GLANCE_S = 0.3


def free_cores(glance_s: float = GLANCE_S) -> float | None:
    """Cores no other process is using now, from a short look at ``/proc/stat`` (None where
    it cannot be read)."""
    watch = CpuWatch()
    time.sleep(glance_s)
    taken = watch.stop().other_cpu_cores
    return None if taken is None else max(0.0, usable_cores() - taken)
