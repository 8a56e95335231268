"""GPU sampling through NVML (``nvidia-ml-py``; the ``trainvis[gpu]`` extra).

A :class:`GpuSampler` thread reads the job's own GPUs every ``interval``
seconds and hands a sample to a callback (the SDK logs it at the run's current
step)::

    {"gpu_utilization": 71.5,   # mean over devices, percent
     "gpu_memory": 20480.0,     # mean memory used over devices, MiB
     "gpus": [{"index": 0, "utilization": 70.0, "memory_used": 20000.0,
               "memory_total": 81559.0, "temperature": 61.0, "power": 312.5}, ...]}

The job's GPUs are those ``CUDA_VISIBLE_DEVICES`` names (indices or UUIDs,
read as CUDA reads it: the list ends at the first entry that names no
device); without the variable, every GPU. ``index`` is the device's position
in that list, i.e. the ``cuda:N`` the training code uses.

No ``nvidia-ml-py``, no driver or no device is a normal case: one info log
line and no sampler. ``pynvml`` is imported only when a sampler is created.

Several nodes (issue 17): a sampler given a ``host`` (:func:`host_name`) names
its series after it instead, so that the nodes of one job do not overwrite each
other. The scheme, which the GPU chart groups and labels by host
(:func:`trainvis.models.parse_gpu_series` reads it)::

    gpu/<host>/utilization        # mean over the host's devices, percent
    gpu/<host>/memory_used        # mean memory used over the host's devices, MiB
    gpu/<host>/<index>.<field>    # one device: gpu/node-a/0.utilization, ...

``<host>`` is ``TRAINVIS_HOST_NAME`` or ``socket.gethostname()``, with any
character other than letters, digits, ``_ . -`` replaced by ``-`` (at most 64).
A single-host run keeps ``gpu_utilization``, ``gpu_memory`` and ``gpus``
(stored as ``gpu<index>.<field>``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("trainvis.gpu")
MIB = 1024 * 1024
Sample = dict[str, Any]

_reported: set[str] = set()

#: Overrides ``socket.gethostname()`` in host-qualified series names.
HOST_ENV = "TRAINVIS_HOST_NAME"
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def host_name(environ: Mapping[str, str] | None = None) -> str:
    """This node's name in series names: ``TRAINVIS_HOST_NAME`` or the host name,
    reduced to letters, digits, ``_ . -`` (other runs of characters become ``-``)."""
    env = os.environ if environ is None else environ
    raw = env.get(HOST_ENV, "").strip() or socket.gethostname()
    return _HOST_UNSAFE.sub("-", raw).strip("-")[:64] or "host"


def host_series(sample: Sample, host: str) -> Sample:
    """``sample`` with flat, host-qualified names (``gpu/<host>/...``)."""
    result: Sample = {}
    for key, field in (("gpu_utilization", "utilization"), ("gpu_memory", "memory_used")):
        if sample.get(key) is not None:
            result[f"gpu/{host}/{field}"] = sample[key]
    for device in sample.get("gpus", ()):
        for field, value in device.items():
            if field != "index" and value is not None:
                result[f"gpu/{host}/{device['index']}.{field}"] = value
    return result


def _info_once(key: str, message: str, *args: Any) -> None:
    if key not in _reported:
        _reported.add(key)
        log.info(message, *args)


def load_nvml() -> Any | None:
    """``pynvml``, initialised; None (logged once at info level) when unavailable."""
    try:
        import pynvml
    except ImportError:
        _info_once(
            "import",
            "GPU monitoring off: nvidia-ml-py is not installed (pip install 'trainvis[gpu]')",
        )
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        _info_once("init", "GPU monitoring off: no NVIDIA driver available (%s)", exc)
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _by_uuid(nvml: Any, wanted: str, count: int) -> Any | None:
    try:
        return nvml.nvmlDeviceGetHandleByUUID(wanted)
    except nvml.NVMLError:
        pass  # not a full UUID: CUDA also accepts a unique prefix
    key = wanted.lower().removeprefix("gpu-")
    matches = []
    for index in range(count):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        if _text(nvml.nvmlDeviceGetUUID(handle)).lower().removeprefix("gpu-").startswith(key):
            matches.append(handle)
    return matches[0] if len(matches) == 1 else None


def visible_devices(nvml: Any, environ: Mapping[str, str] | None = None) -> list[Any]:
    """NVML handles of the GPUs this process may use, in CUDA order.

    Honours ``CUDA_VISIBLE_DEVICES`` by index or UUID (prefix); an empty value
    means no GPU, and the list ends at the first entry that names no device.
    """
    env = os.environ if environ is None else environ
    count = int(nvml.nvmlDeviceGetCount())
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(count)]
    handles: list[Any] = []
    seen: set[str] = set()
    for entry in (part.strip() for part in raw.split(",")):
        if not entry or entry in seen:
            break
        seen.add(entry)
        if entry.isdigit():
            if int(entry) >= count:
                break
            handles.append(nvml.nvmlDeviceGetHandleByIndex(int(entry)))
            continue
        handle = _by_uuid(nvml, entry, count)
        if handle is None:
            break
        handles.append(handle)
    return handles


def _field(nvml: Any, name: str, read: Callable[[], float]) -> float | None:
    try:
        return float(read())
    except nvml.NVMLError as exc:  # e.g. power on a MIG slice: not supported
        _info_once(f"field:{name}", "GPU %s not readable, left out: %s", name, exc)
        return None


def read_device(nvml: Any, index: int, handle: Any) -> dict[str, Any]:
    """One device's reading: utilization %, memory MiB, temperature °C, power W."""
    memory: float | None = None
    total: float | None = None
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        memory, total = info.used / MIB, info.total / MIB
    except nvml.NVMLError as exc:
        _info_once("field:memory", "GPU memory not readable, left out: %s", exc)
    return {
        "index": index,
        "utilization": _field(
            nvml, "utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        ),
        "memory_used": memory,
        "memory_total": total,
        "temperature": _field(
            nvml,
            "temperature",
            lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        ),
        "power": _field(nvml, "power", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
    }


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def sample(nvml: Any, handles: list[Any]) -> Sample:
    """One sample over ``handles``: means plus the per-device ``gpus`` list."""
    devices = [read_device(nvml, index, handle) for index, handle in enumerate(handles)]
    result: Sample = {}
    utilization = _mean([device["utilization"] for device in devices])
    memory = _mean([device["memory_used"] for device in devices])
    if utilization is not None:
        result["gpu_utilization"] = utilization
    if memory is not None:
        result["gpu_memory"] = memory
    result["gpus"] = [
        {key: value for key, value in device.items() if value is not None} for device in devices
    ]
    return result


class GpuSampler:
    """A daemon thread calling ``callback(sample)`` every ``interval`` seconds.

    Build it with :meth:`create`, which returns None when there is nothing to
    sample. :meth:`stop` returns at once: the thread sleeps on an ``Event``.
    With a ``host``, samples carry host-qualified names (:func:`host_series`).
    """

    def __init__(
        self,
        callback: Callable[[Sample], None],
        *,
        nvml: Any,
        handles: list[Any],
        interval: float = 5.0,
        host: str | None = None,
    ) -> None:
        self.callback = callback
        self.interval = interval
        self.host = host
        self.handles = handles
        self._nvml = nvml
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainvis-gpu", daemon=True)

    @classmethod
    def create(
        cls,
        callback: Callable[[Sample], None],
        *,
        interval: float = 5.0,
        environ: Mapping[str, str] | None = None,
        host: str | None = None,
    ) -> GpuSampler | None:
        """A sampler over the visible GPUs, or None (logged once) without NVML or GPUs."""
        nvml = load_nvml()
        if nvml is None:
            return None
        try:
            handles = visible_devices(nvml, environ)
        except nvml.NVMLError as exc:
            _info_once("enumerate", "GPU monitoring off: cannot list GPUs (%s)", exc)
            handles = []
        if not handles:
            _info_once("none", "GPU monitoring off: no GPU visible to this process")
            nvml.nvmlShutdown()
            return None
        return cls(callback, nvml=nvml, handles=handles, interval=interval, host=host)

    def start(self) -> GpuSampler:
        """Start sampling (the first sample is taken at once)."""
        self._thread.start()
        return self

    def sample(self) -> Sample:
        """Read every device now."""
        reading = sample(self._nvml, self.handles)
        return reading if self.host is None else host_series(reading, self.host)

    def _loop(self) -> None:
        failed = False
        while True:
            try:
                self.callback(self.sample())
                failed = False
            except Exception:  # keep sampling; a broken callback is reported once per streak
                if not failed:
                    log.exception("GPU sample failed; will retry in %.0f s", self.interval)
                failed = True
            if self._stop.wait(self.interval):
                return

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and release NVML."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown: %s", exc)
