"""This process's resident memory on Linux: read it, restart its peak, and
return freed heap to the system.

Used by the memory benchmarks (``tools/benchmark/``) and by the test
suite's memory bound (``tests/conftest.py``). Elsewhere the readers return
``None`` and the others do nothing.
"""
import ctypes
import gc
from typing import Optional


def status_kib(field: str, pid='self') -> Optional[int]:
    """A field of ``/proc/<pid>/status`` in KiB, e.g. ``VmRSS`` (resident
    now) or ``VmHWM`` (peak resident); ``None`` where it cannot be read
    (not Linux, or the process has exited)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (``VmHWM``) of this process at
    its current resident size (``clear_refs`` value 5, Linux >= 4.0).
    Returns False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def release_freed_heap() -> None:
    """Collect garbage, then hand glibc's free heap pages back to the system.

    glibc keeps freed memory in its heap: after a large model is freed the
    process can stay hundreds of MB above its live data. ``malloc_trim(0)``
    returns it; it does nothing on other C libraries."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_MALLOC_TRIM = []


def _malloc_trim():
    if not _MALLOC_TRIM:
        try:
            _MALLOC_TRIM.append(ctypes.CDLL(None).malloc_trim)
        except (AttributeError, OSError):
            _MALLOC_TRIM.append(None)  # not glibc (macOS, musl)
    return _MALLOC_TRIM[0]
