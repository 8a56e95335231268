"""System sampling through psutil: CPU, memory, disk and network into ``system.*``.

A :class:`SystemSampler` thread reads the machine and this process every
``interval`` seconds and hands a sample to a callback (the SDK logs it at the
run's current step, like GPU samples)::

    {"system.cpu_percent": 37.5,            # whole machine, 0-100
     "system.process_cpu_percent": 180.0,   # this process, 0-100 x CPUs
     "system.process_rss_mib": 812.4,       # this process's resident memory
     "system.memory_used_mib": 10240.0,     # the machine's used memory
     "system.memory_percent": 41.2,
     "system.disk_read_mib": 12.0,          # since the run started (all disks)
     "system.disk_write_mib": 3.5,
     "system.net_sent_mib": 0.8,            # since the run started (all interfaces)
     "system.net_recv_mib": 25.1}

CPU percentages cover the time since the previous sample, so the first sample
is taken one interval after :meth:`SystemSampler.start` (which primes them).
The I/O counters count from ``start`` and never go down. A reading psutil
cannot give (no disk counters in some containers, access denied) is left out,
logged once. psutil is a base dependency; without it (an install made with
``--no-deps``) the sampler is off, with an info line saying what to install.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("trainvis.client")
MIB = 1024 * 1024
Sample = dict[str, float]

_reported: set[str] = set()


def _info_once(key: str, message: str, *args: Any) -> None:
    if key not in _reported:
        _reported.add(key)
        log.info(message, *args)


def load_psutil() -> Any | None:
    """The ``psutil`` module; None (logged once at info level) when it is missing."""
    try:
        import psutil
    except ImportError:
        _info_once("import", "system monitoring off: psutil is not installed (pip install psutil)")
        return None
    return psutil


class SystemSampler:
    """A daemon thread calling ``callback(sample)`` every ``interval`` seconds.

    Build it with :meth:`create` (None without psutil). :meth:`stop` returns at
    once: the thread sleeps on an ``Event``.
    """

    def __init__(
        self, callback: Callable[[Sample], None], *, psutil: Any, interval: float = 10.0
    ) -> None:
        self.callback = callback
        self.interval = interval
        self._psutil = psutil
        self._process = psutil.Process()
        self._disk_start: tuple[float, float] | None = None
        self._net_start: tuple[float, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainvis-system", daemon=True)

    @classmethod
    def create(
        cls, callback: Callable[[Sample], None], *, interval: float = 10.0
    ) -> SystemSampler | None:
        """A sampler of this machine and process, or None (logged once) without psutil."""
        psutil = load_psutil()
        return None if psutil is None else cls(callback, psutil=psutil, interval=interval)

    def start(self) -> SystemSampler:
        """Prime the CPU percentages and the I/O baselines, then start sampling."""
        self.prime()
        self._thread.start()
        return self

    def prime(self) -> None:
        """Start the CPU-percent windows and take the I/O counters' starting values."""
        self._read("cpu", lambda: self._psutil.cpu_percent(None))
        self._read("process_cpu", lambda: self._process.cpu_percent(None))
        self._disk_start = self._read("disk", self._disk_bytes)
        self._net_start = self._read("network", self._net_bytes)

    def sample(self) -> Sample:
        """Read the machine and the process now (see the module docstring for the keys)."""
        psutil, process = self._psutil, self._process
        result: Sample = {}
        self._put(result, "system.cpu_percent", "cpu", lambda: psutil.cpu_percent(None))
        self._put(result, "system.process_cpu_percent", "process_cpu", process.cpu_percent)
        self._put(result, "system.process_rss_mib", "rss", lambda: process.memory_info().rss / MIB)
        memory = self._read("memory", psutil.virtual_memory)
        if memory is not None:
            result["system.memory_used_mib"] = float(memory.used) / MIB
            result["system.memory_percent"] = float(memory.percent)
        self._since_start(result, "disk", self._disk_start, self._disk_bytes())
        self._since_start(result, "net", self._net_start, self._net_bytes())
        return result

    def _disk_bytes(self) -> tuple[float, float] | None:
        counters = self._read("disk", self._psutil.disk_io_counters)
        return None if counters is None else (counters.read_bytes, counters.write_bytes)

    def _net_bytes(self) -> tuple[float, float] | None:
        counters = self._read("network", self._psutil.net_io_counters)
        return None if counters is None else (counters.bytes_sent, counters.bytes_recv)

    def _since_start(
        self,
        result: Sample,
        kind: str,
        start: tuple[float, float] | None,
        now: tuple[float, float] | None,
    ) -> None:
        if start is None or now is None:
            return
        names = ("read", "write") if kind == "disk" else ("sent", "recv")
        for name, first, current in zip(names, start, now, strict=True):
            # psutil keeps counters from wrapping (nowrap=True); max() guards a reset
            result[f"system.{kind}_{name}_mib"] = max(float(current) - float(first), 0.0) / MIB

    def _put(self, result: Sample, key: str, what: str, read: Callable[[], Any]) -> None:
        value = self._read(what, read)
        if value is not None:
            result[key] = float(value)

    def _read(self, what: str, read: Callable[[], Any]) -> Any | None:
        try:
            value = read()
        except (self._psutil.Error, OSError, RuntimeError) as exc:
            _info_once(f"field:{what}", "system %s not readable, left out: %s", what, exc)
            return None
        if value is None:  # e.g. disk_io_counters() on a machine without disks
            _info_once(f"field:{what}", "system %s not available, left out", what)
        return value

    def _loop(self) -> None:
        failed = False
        while not self._stop.wait(self.interval):
            try:
                self.callback(self.sample())
                failed = False
            except Exception:  # keep sampling; a broken callback is reported once per streak
                if not failed:
                    log.exception("system sample failed; will retry in %.0f s", self.interval)
                failed = True

    @property
    def alive(self) -> bool:
        """The sampling thread is running."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (returns within ``timeout``, at once when it sleeps)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
