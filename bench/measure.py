"""What the benchmarks share: a progress line, and the process's peak resident memory.

Imported as `bench.measure` by the scripts, which put the repository's root on `sys.path`.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def say(text: str) -> None:
    """A progress line, on stderr so the results on stdout stay clean."""
    print(text, file=sys.stderr, flush=True)


def reset_peak() -> None:
    """Start measuring the peak afresh (Linux: clear the resident high-water mark)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb() -> float:
    """The resident high-water mark (VmHWM) since the last `reset_peak`, in MB; where Linux's
    /proc is not there, the process's maximum resident size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
