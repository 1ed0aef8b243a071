"""Measuring other processes from the outside, through /proc (Linux).

What is measured and how:
- CPU of a process tree: every `interval` seconds the sampler lists the root and all its
  descendants and reads each one's own user+system time (`/proc/<pid>/stat` fields 14-15).
  The tree's CPU at a moment is the sum, over every process ever seen, of the last value
  read for it, so a worker that has exited still counts (up to one interval of its last
  work may be missed). Children's times (`cutime`/`cstime`) are not added: the children
  are sampled themselves, and adding both would count them twice.
- Exact CPU of a process that exits: `ChildCPU` takes the harness's own
  `getrusage(RUSAGE_CHILDREN)` before and after. With the harness registered as a child
  subreaper (`become_subreaper`), descendants orphaned by the exit are re-parented to the
  harness and reaped by `reap_orphans`, so their time lands in that total too.
- Peak memory: `VmHWM` of the root from `/proc/<pid>/status` (its own high-water mark,
  unlike `ru_maxrss`, which for a forked child can include the parent's pages), and the
  highest sum of `VmRSS` over the tree seen by the sampler.
- Open file descriptors (`/proc/<pid>/fd`) and threads of the root.
"""

from __future__ import annotations

import ctypes
import os
import resource
import threading
import time
from dataclasses import dataclass, field

TICK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux >= 3.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def read_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, own user+system CPU seconds), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK


def read_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (bytes) and Threads of a process; empty when it is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
                elif key == "Threads":
                    out[key] = int(value)
    except OSError:
        pass
    return out


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read_stat(int(name))
        if stat is not None:
            kids.setdefault(stat[0], []).append(int(name))
    return kids


def descendants(root: int, kids: dict[int, list[int]] | None = None) -> list[int]:
    kids = children_map() if kids is None else kids
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


@dataclass
class Sample:
    t: float          # time.time()
    cpu: float        # tree CPU seconds so far
    rss: int          # root VmRSS
    hwm: int          # root VmHWM
    tree_rss: int     # sum of VmRSS over the tree
    processes: int


@dataclass
class TreeSampler:
    """Samples a process tree in a background thread until `stop()`."""

    root: int
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    last_cpu: dict[int, float] = field(default_factory=dict)
    peak_tree_rss: int = 0
    peak_hwm: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> Sample | None:
        # The root's children only: a descendant's ancestors are in the tree by construction.
        pids = [self.root, *descendants(self.root)]
        tree_rss = 0
        status_root: dict[str, int] = {}
        alive = 0
        with self._lock:
            for pid in pids:
                stat = read_stat(pid)
                if stat is None:
                    continue
                alive += 1
                self.last_cpu[pid] = stat[1]
                status = read_status(pid)
                tree_rss += status.get("VmRSS", 0)
                if pid == self.root:
                    status_root = status
            if not alive:
                return None
            cpu = sum(self.last_cpu.values())
            sample = Sample(time.time(), cpu, status_root.get("VmRSS", 0), status_root.get("VmHWM", 0),
                            tree_rss, alive)
            self.samples.append(sample)
            self.peak_tree_rss = max(self.peak_tree_rss, tree_rss)
            self.peak_hwm = max(self.peak_hwm, sample.hwm)
        return sample

    def cpu_at(self, when: float) -> float:
        """Tree CPU seconds at time `when` (interpolated between samples)."""
        with self._lock:
            samples = list(self.samples)
        if not samples:
            return 0.0
        if when <= samples[0].t:
            return samples[0].cpu
        for a, b in zip(samples, samples[1:]):
            if a.t <= when <= b.t:
                if b.t == a.t:
                    return b.cpu
                return a.cpu + (b.cpu - a.cpu) * (when - a.t) / (b.t - a.t)
        return samples[-1].cpu

    def last_busy(self, since: float, threshold: float = 0.15) -> float:
        """The end of the last interval after `since` in which the tree used more than
        `threshold` of a core (the end of the last burst of work)."""
        with self._lock:
            samples = [s for s in self.samples if s.t >= since]
        end = since
        for a, b in zip(samples, samples[1:]):
            if b.t > a.t and (b.cpu - a.cpu) / (b.t - a.t) > threshold:
                end = b.t
        return end

    def idle_for(self, seconds: float, threshold: float = 0.15) -> bool:
        """Whether the tree has used less than `threshold` of a core over the last `seconds`."""
        with self._lock:
            samples = list(self.samples)
        if not samples or samples[-1].t - samples[0].t < seconds:
            return False
        now = samples[-1]
        start = next(s for s in reversed(samples) if now.t - s.t >= seconds)
        return (now.cpu - start.cpu) / (now.t - start.t) < threshold


class ChildCPU:
    """CPU seconds used by children reaped between `__enter__` and `__exit__` (exact)."""

    def __enter__(self) -> ChildCPU:
        self.before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.seconds = (after.ru_utime - self.before.ru_utime) + (after.ru_stime - self.before.ru_stime)


def reap_orphans(keep: set[int], timeout: float = 10.0) -> int:
    """Wait for (and reap) children of this process that are not in `keep`: descendants of an
    exited child, re-parented here because this process is a subreaper. Returns how many."""
    deadline = time.monotonic() + timeout
    reaped = 0
    while True:
        orphans = [p for p in children_map().get(os.getpid(), []) if p not in keep]
        if not orphans:
            return reaped
        for pid in orphans:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                reaped += 1
        if time.monotonic() > deadline:
            for pid in orphans:
                try:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            return reaped
        time.sleep(0.05)
