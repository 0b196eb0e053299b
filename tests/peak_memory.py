"""Peak memory of a piece of code run in a fresh Python process.

Size-bomb tests assert that a refused file never costs memory near its declared size.
The child runs under an address-space limit as well, so that a regression fails the
test with a MemoryError instead of taking the machine's memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

MiB = 2**20
# Enough for Python, numpy, SimpleITK, pydicom, Dask imports and a small image; far below
# every bomb's size (1-25 GiB).
ADDRESS_SPACE_LIMIT = 3 * 2**30


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes

    @property
    def peak_mib(self) -> float:
        return self.peak_rss / MiB


def run_measured(code: str, limit: int = ADDRESS_SPACE_LIMIT, timeout: float = 300) -> Run:
    """Run ``code`` in a new interpreter (this one's path) and measure its peak RSS,
    that of any process it started included."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        # A fresh parent whose only child is the measured code: RUSAGE_CHILDREN of the
        # test process would also hold every earlier test's largest child.
        parent = (
            "import resource, subprocess, sys\n"
            "code = subprocess.call([sys.executable, '-c', sys.argv[1]])\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
            "open(sys.argv[2], 'w').write(str(peak))\n"
            "sys.exit(code)\n")
        done = subprocess.run(
            [sys.executable, "-c", parent, prelude + textwrap.dedent(code), str(peak_file)],
            capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        return Run(done.returncode, done.stdout, done.stderr, int(peak_file.read_text()))
