"""Skip the interpreter's teardown once a step has succeeded.

Every step is its own Python process. After a step with torch and MLflow loaded returns and
KFP has written its outputs, tearing the interpreter down (module and object finalisers) takes
1-2 s per step: a sixth of the local pipeline's overhead. Nothing of ours needs it: MLflow runs
are closed by their context managers and logging is synchronous.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from types import TracebackType


def exit_fast_when_done() -> None:
    """At interpreter exit, flush and `os._exit(0)` unless an exception went uncaught.

    Call it first in a component body: atexit runs handlers in reverse order, so the handlers
    that torch and MLflow register later still run before this one. An uncaught exception
    (seen by `sys.excepthook`) keeps the normal exit and its non-zero status.
    """
    failed: list[bool] = []
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        failed.append(True)
        previous(kind, value, tb)

    def finish() -> None:
        if failed:
            return
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    sys.excepthook = hook
    atexit.register(finish)
