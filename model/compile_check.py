"""Can `torch.compile` run here? Inductor compiles what it generates with the system's compiler.

On CUDA, Triton builds its kernel launchers with a C compiler, found as Triton finds it:
`CC` when set, else `gcc` or `clang` on PATH (`cc` too, the name Debian's gcc also installs).
On CPU, inductor's C++ backend needs `CXX` or `g++`. Without one the first compiled step dies
with "Failed to find C compiler" (or `InvalidCxxCompiler`) minutes into a run, so the trainer
asks here first and trains eagerly instead, saying so (`model.train`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganops.model.trainers import StepOptions

log = logging.getLogger(__name__)

C_COMPILERS = ("cc", "gcc", "clang")
CXX_COMPILERS = ("c++", "g++", "clang++")


def _found(names: tuple[str, ...], override: str | None, path: str | None) -> str | None:
    if override:
        # A named compiler (CC / CXX) is what inductor will use: it must exist.
        return shutil.which(override, path=path)
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def find_compiler(device_type: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The compiler inductor would use for `device_type` ("cuda" needs C, "cpu" C++), or None.

    `environ` defaults to this process's environment, read at call time: it is the one
    inductor and Triton read when they compile.
    """
    env = os.environ if environ is None else environ
    path = env.get("PATH", "")
    if device_type == "cpu":
        return _found(CXX_COMPILERS, env.get("CXX"), path)
    return _found(C_COMPILERS, env.get("CC"), path)


def compile_blocker(device_type: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why `torch.compile` cannot run on `device_type` here, as one line; None when it can."""
    if find_compiler(device_type, environ) is not None:
        return None
    env = os.environ if environ is None else environ
    if device_type == "cpu":
        wanted, var = "a C++ compiler (g++ or clang++)", "CXX"
    else:
        wanted, var = "a C compiler (gcc or clang)", "CC"
    named = env.get(var)
    where = f"{var}={named} is not on PATH" if named else f"none on PATH and {var} unset"
    return (
        f"torch.compile is off: inductor needs {wanted} at run time ({where}); training "
        "eagerly, which is slower. Install gcc/g++ in the image (the Dockerfile's trainer "
        "stage does)."
    )


def runnable_options(opts: StepOptions) -> tuple[StepOptions, list[str]]:
    """`opts` with compile turned off where inductor would find no compiler, and the note
    that says so (also logged as a warning); unchanged otherwise."""
    if not opts.compile:
        return opts, []
    blocker = compile_blocker(opts.device.type)
    if blocker is None:
        return opts, []
    log.warning("%s", blocker)
    return dataclasses.replace(opts, compile=False), [blocker]


__all__ = ["CXX_COMPILERS", "C_COMPILERS", "compile_blocker", "find_compiler", "runnable_options"]
