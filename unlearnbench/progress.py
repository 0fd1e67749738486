"""Progress bars on every long step; ``--quiet`` (or UNLEARNBENCH_QUIET=1) silences them."""
from __future__ import annotations

import os
import sys

_quiet = os.environ.get("UNLEARNBENCH_QUIET", "") not in ("", "0")


def set_quiet(value: bool) -> None:
    global _quiet
    _quiet = value


def bar(total: int | None = None, desc: str = "", unit: str = "it", leave: bool = False):
    """A tqdm bar on stderr; total=0 gives a silent bar (an inner loop under an outer bar)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=_quiet or total == 0, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def say(msg: str) -> None:
    if not _quiet:
        print(msg, file=sys.stderr)
