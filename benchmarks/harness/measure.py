"""Measuring one process tree from outside: wall time, CPU of the tree, the CPU other processes of the machine used
meanwhile (``/proc/stat``), and every process's peak RSS.

Peak RSS is VmHWM, the kernel's high-water mark of a process's own memory map, read from ``/proc/<pid>/status`` every
``poll_s`` for every process of the tree (psutil finds them) and by Python children themselves at the end of their
work (:func:`self_rss`). ``ru_maxrss`` from ``os.wait4`` is kept as a cross-check only: it also counts the image a
child was forked from (the benchmark process) before its ``exec``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (every process), from /proc/stat."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def vm_hwm_kb(pid: int) -> int | None:
    """VmHWM of process ``pid`` in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def self_rss() -> dict[str, int | None]:
    """This process's peak RSS: VmHWM of its own memory map (ru_maxrss also counts the image it was forked from)."""
    import resource

    return {
        "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "self_hwm_kb": vm_hwm_kb(os.getpid()),
    }


def role(cmdline: list[str]) -> str:
    """What a process of the measured tree is: a replica (by shard), a prestarted replica, or something else."""
    if "run-shard" in cmdline and "--shard" in cmdline:
        return f"replica-{cmdline[cmdline.index('--shard') + 1]}"
    if "run-shard" in cmdline:  # prestarted (--await-job): its shard arrives on stdin
        return "replica-prestarted"
    return "other:" + " ".join(cmdline[:4])


def measure(cmd: list[str], poll_s: float = 0.1, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; return its wall time, output, ``ru_maxrss`` (wait4) and per-process peak RSS of its tree."""
    import resource

    import psutil

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        load_before = os.getloadavg()[0]
        busy_before, self_before = busy_cpu_s(), resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        popen = subprocess.Popen(cmd, stdout=out, stderr=err, env=env or dict(os.environ))
        root = psutil.Process(popen.pid)
        procs: dict[int, dict[str, Any]] = {}
        status = rusage = None

        def sample(process: psutil.Process, given_role: str | None) -> None:
            try:
                entry = procs.get(process.pid)
                if entry is not None and entry["role"].startswith("other:"):
                    # first seen between fork and exec (still the parent's image): look again
                    if role(process.cmdline()) != entry["role"]:
                        entry = None
                if entry is None:
                    cmdline = process.cmdline()
                    entry = procs[process.pid] = {
                        "pid": process.pid,
                        "role": given_role or role(cmdline),
                        "max_rss": 0,
                        "vm_hwm": 0,
                        "first_seen_s": time.perf_counter() - started,
                        "create_time": process.create_time(),
                    }
                rss = process.memory_info().rss
                hwm = vm_hwm_kb(process.pid)
                entry["max_rss"] = max(entry["max_rss"], rss)
                entry["vm_hwm"] = max(entry["vm_hwm"], (hwm or 0) * 1024)
                entry["last_seen_s"] = time.perf_counter() - started
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass

        while True:
            pid, status, rusage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                break
            sample(root, "main")
            try:
                children = root.children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            for child in children:
                sample(child, None)
            time.sleep(poll_s)
        wall = time.perf_counter() - started
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        busy = busy_cpu_s() - busy_before
        popen.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if popen.returncode != 0:
        raise RuntimeError(f"{cmd} failed with code {popen.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    root_create = procs.get(popen.pid, {}).get("create_time")
    for entry in procs.values():
        entry["started_after_s"] = round(entry.pop("create_time") - root_create, 3) if root_create else None
    tree_cpu = rusage.ru_utime + rusage.ru_stime
    own_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
    foreign = max(0.0, busy - tree_cpu - own_cpu)
    return {
        "wall_s": wall,
        "stdout": stdout,
        "stderr": stderr,
        "ru_maxrss": rusage.ru_maxrss * 1024,
        "cpu_s": tree_cpu,
        "foreign_cpu_s": foreign,
        "foreign_cores": foreign / wall,
        "processes": sorted(procs.values(), key=lambda e: e["role"]),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def json_tail(text: str) -> dict[str, Any]:
    """The JSON document a child printed last on stdout (after any other output)."""
    start = text.find("{")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError:
        return json.loads(text.strip().splitlines()[-1])


def run_script(script: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure ``python script args...``, a child that prints one JSON document; return it with the measurement."""
    m = measure([sys.executable, str(script), *map(str, args)], env=env)
    result = json_tail(m["stdout"])
    main = next((p for p in m["processes"] if p["role"] == "main"), {})
    result.update(
        wall_s=m["wall_s"],
        peak_rss=max((result.get("self_hwm_kb") or 0) * 1024, main.get("vm_hwm") or 0),
        ru_maxrss=m["ru_maxrss"],
        polled_rss=main.get("max_rss"),
        polled_hwm=main.get("vm_hwm"),
        load_before=m["load_before"],
        load_after=m["load_after"],
        cpu_s=m["cpu_s"],
        foreign_cpu_s=m["foreign_cpu_s"],
        foreign_cores=m["foreign_cores"],
    )
    return result


class ReplicaSampler(threading.Thread):
    """Samples the RSS of every replica of the driver whose command line holds ``marker`` every ``interval`` s, for
    a timeline (``measure`` keeps only each process's peak): does the peak level off or keep growing?"""

    def __init__(self, marker: str, interval: float = 0.5):
        super().__init__(daemon=True)
        self.marker, self.interval = marker, interval
        self.stop = threading.Event()
        self.timeline: dict[str, list[list[float]]] = {}

    def run(self) -> None:
        import psutil

        started, driver = time.perf_counter(), None
        while not self.stop.wait(self.interval):
            try:
                if driver is None:
                    driver = next((p for p in psutil.process_iter(["cmdline"])
                                   if self.marker in (p.info["cmdline"] or [])), None)
                    continue
                for child in driver.children(recursive=True):
                    who = role(child.cmdline())
                    if who == "replica-prestarted":  # its shard is not on its command line: tell them apart by pid
                        who = f"replica-pid{child.pid}"
                    if who.startswith("replica-"):
                        point = [round(time.perf_counter() - started, 1), round(child.memory_info().rss / 2**20)]
                        self.timeline.setdefault(who, []).append(point)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
