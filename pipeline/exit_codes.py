"""The exit codes every `ganops` command uses, so a script can tell the outcomes apart.
`docs/cli.md` and the `--help` epilogs show the same table."""

from __future__ import annotations

EXIT_OK = 0
# The command ran and something did not work: a run failed or was cancelled, a deploy
# failed, a decision was refused or came too late, a backend could not be reached.
EXIT_FAILED = 1
# Bad arguments or settings: nothing was done.
EXIT_USAGE = 2
# The run finished and the gate rejected its challenger: nothing is registered for a deploy.
EXIT_GATED = 3

EPILOG = (
    "exit codes: 0 done · 1 failed (run failed or cancelled, deploy failed, refused) · "
    "2 bad usage or settings · 3 the gate rejected the challenger (pipeline run, "
    "evaluate --gate)"
)

__all__ = ["EPILOG", "EXIT_FAILED", "EXIT_GATED", "EXIT_OK", "EXIT_USAGE"]
