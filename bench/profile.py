"""`telehealth bench --profile DIR`: py-spy samples the services while the end-to-end run loads them.

py-spy (the `profile` extra) writes collapsed stacks (`<service>.txt`) and flame graphs
(`<service>.svg`); `top` reduces one to the functions that cost most, self and inclusive, as % of samples.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path


class Spies:
    """Two `py-spy record` per service, stopped (and so written) on exit: collapsed stacks
    (`<service>.txt`, for `top`) and a flame graph (`<service>.svg`, py-spy's own)."""

    def __init__(self, out: Path, pids: dict[str, int], rate: int = 200) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise SystemExit("telehealth bench --profile needs py-spy (the `profile` extra)")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self._procs = [
            subprocess.Popen(
                [
                    *(exe, "record", "--rate", str(rate), "--format", kind, "--threads", "--nonblocking"),
                    *("-o", str(out / f"{name}.{suffix}"), "-p", str(pid)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
            for kind, suffix in (("raw", "txt"), ("flamegraph", "svg"))
        ]

    def stop(self) -> None:
        for proc in self._procs:
            proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            proc.wait(timeout=60)


def top(collapsed: Path, n: int = 15) -> str:
    """The costliest functions of one collapsed-stack file, idle waits included (they are cost too)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [f for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"{collapsed.name}: no samples"
    lines = [f"{collapsed.stem}: {total} samples", "  self:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(n)]
    lines.append("  inclusive:")
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(n * 2)]
    return "\n".join(lines)
