"""`ganops pipeline ...`: compile the CT pipeline, run it (locally or on KFP_HOST), follow it.

    ganops pipeline compile -o ct_pipeline.yaml [--image IMG]
    ganops pipeline run [key=value ...] [--no-follow] [--request-id ID] [--json]
    ganops pipeline status RUN_ID [--json]
    ganops pipeline list [--limit N] [--json]
    ganops pipeline cancel RUN_ID

`run` exits 0 when the challenger awaits approval (or was deployed), 3 when the gate
rejected it, 1 when the run failed or was cancelled, 2 on bad usage.

The `ganops pipeline` command enters through `ganops.bot.pipeline_cli`, which reads the bot's
own settings (namespace, token, artifact URI, data Secret, node selector, image) and hands
`main` a `CliEnv` that builds the bot's launcher. Run as `python -m ganops.pipeline.cli`, the
environment (GANOPS_STATE_DIR, KFP_HOST, MLFLOW_TRACKING_URI, GANOPS_IMAGE) is read here in
`main` and nowhere below it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ganops.pipeline.exit_codes import EPILOG, EXIT_FAILED, EXIT_GATED, EXIT_OK, EXIT_USAGE
from ganops.pipeline.params import describe_keys, known_keys, params_from_strings
from ganops.pipeline.ports import PIPELINE_STEPS, PipelineError, PipelineLauncher, RunStatus
from ganops.pipeline.progress import train_progress_text

if TYPE_CHECKING:
    from ganops.pipeline.placement import Placement

DEFAULT_IMAGE = "ganops-trainer:latest"
POLL_S = 1.0


@dataclass(frozen=True)
class CliEnv:
    state_dir: Path
    kfp_host: str | None
    mlflow_uri: str
    image: str
    # The launcher as the bot builds it (cluster settings included); None: from the fields.
    launcher: Callable[[], PipelineLauncher] | None = None
    placement: Placement | None = None  # what `compile` bakes in (GPU node selector, Secret)


def env_from(environ: Mapping[str, str]) -> CliEnv:
    state_dir = Path(environ.get("GANOPS_STATE_DIR") or ".ganops").resolve()
    uri = environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state_dir / 'mlflow.db'}"
    return CliEnv(
        state_dir,
        environ.get("KFP_HOST") or None,
        uri,
        environ.get("GANOPS_IMAGE") or DEFAULT_IMAGE,
    )


_JSON_HELP = "print one JSON document on stdout instead of text (default: text)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganops pipeline", description=__doc__.split("\n")[0], epilog=EPILOG
    )
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("compile", help="write the pipeline YAML for Kubeflow")
    comp.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("ct_pipeline.yaml"),
        help="where to write the YAML (default: %(default)s)",
    )
    comp.add_argument(
        "--image", help="the trainer image every step runs in (default: $GANOPS_IMAGE)"
    )
    run = sub.add_parser(
        "run",
        help="launch a run and follow it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="parameters (key=value, as /retrain takes them):\n"
        + "\n".join(describe_keys())
        + "\n\n"
        + EPILOG.replace(" · ", "\n  ").replace("exit codes: ", "exit codes:\n  "),
    )
    run.add_argument("params", nargs="*", metavar="key=value", help="run parameters, see below")
    run.add_argument("--no-follow", action="store_true", help="print the run id and return")
    run.add_argument("--request-id", help="idempotency key (default: a new one)")
    run.add_argument("--json", action="store_true", help=_JSON_HELP + "; progress goes to stderr")
    status = sub.add_parser("status", help="show one run")
    status.add_argument("run_id", help="the run's id (ganops pipeline list)")
    status.add_argument("--json", action="store_true", help=_JSON_HELP)
    listing = sub.add_parser("list", help="recent runs")
    listing.add_argument(
        "--limit", type=int, default=20, help="most runs to show, > 0 (default: %(default)s)"
    )
    listing.add_argument("--json", action="store_true", help=_JSON_HELP)
    cancel = sub.add_parser("cancel", help="stop a run")
    cancel.add_argument("run_id", help="the run's id (ganops pipeline list)")
    return parser


def main(
    argv: Sequence[str] | None = None, *, env_factory: Callable[[], CliEnv] | None = None
) -> int:
    """`env_factory` (called after parsing, so --help needs no settings) gives the
    environment; default: `env_from(os.environ)`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env = env_factory() if env_factory is not None else env_from(os.environ)
    try:
        if args.command == "compile":
            from ganops.pipeline.ct_pipeline import compile_pipeline
            from ganops.pipeline.placement import DEFAULT_PLACEMENT

            placement = env.placement or DEFAULT_PLACEMENT
            path = compile_pipeline(args.output, args.image or env.image, placement)
            print(f"wrote {path}")
            return 0
        if args.command == "run":
            return _run(parser, args, env)
        if args.command == "list" and args.limit < 1:
            return _usage(parser, f"--limit must be > 0, got {args.limit}", "list")
        launcher = _launcher(env)
        if args.command == "status":
            st = launcher.status(args.run_id)
            print(to_json(st) if args.json else format_status(st, final_details=True))
        elif args.command == "list":
            runs = launcher.list_runs(args.limit)
            if args.json:
                print(json.dumps([status_dict(st) for st in runs], indent=2, default=str))
            else:
                for st in runs:
                    print(format_status(st))
        elif args.command == "cancel":
            launcher.cancel(args.run_id)
            print(f"cancelled {args.run_id}")
    except PipelineError as exc:
        print(f"ganops pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE if type(exc).__name__ == "InvalidParamsError" else EXIT_FAILED
    return EXIT_OK


def exit_code(st: RunStatus) -> int:
    """What a followed run's final state means to a script: see EPILOG."""
    if st.state in {"awaiting_approval", "deployed"}:
        return EXIT_OK
    return EXIT_GATED if st.state == "gated" else EXIT_FAILED


def status_dict(st: RunStatus) -> dict[str, object]:
    return dataclasses.asdict(st)


def to_json(st: RunStatus) -> str:
    return json.dumps(status_dict(st), indent=2, default=str)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, env: CliEnv) -> int:
    from ganops.pipeline.ports import InvalidParamsError

    pairs: dict[str, str] = {}
    for item in args.params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return _usage(parser, f"expected key=value, got {item!r}")
        pairs[key.strip()] = value
    launcher = _launcher(env)
    try:
        # The operator's CLI (a shell where the bot runs) is not held to the bot's data
        # allowlist; the fetch step's address, symlink and archive rules still hold.
        params = dataclasses.replace(params_from_strings(pairs), data_anywhere=True)
        launched = launcher.launch(params, args.request_id or f"cli-{uuid.uuid4().hex}")
    except InvalidParamsError as exc:
        return _usage(parser, str(exc))
    where = launched.url or f"local run, files in {env.state_dir / 'runs' / launched.run_id}"
    # With --json, stdout holds the one JSON document; what people read goes to stderr.
    said = sys.stderr if args.json else sys.stdout
    repeat = "" if launched.created else " [already started]"
    print(f"run {launched.run_id} ({where}){repeat}", file=said)
    if args.no_follow:
        if args.json:
            print(json.dumps(dataclasses.asdict(launched), indent=2, default=str))
        return EXIT_OK
    final = follow(launcher, launched.run_id, said)
    print(to_json(final) if args.json else format_status(final, final_details=True))
    return exit_code(final)


def follow(launcher: PipelineLauncher, run_id: str, out: TextIO, poll: float = POLL_S) -> RunStatus:
    """Poll until the run is final, keeping one progress line up to date."""
    tty, last = out.isatty(), ""
    start = time.monotonic()
    try:
        while True:
            st = launcher.status(run_id)
            line = progress_line(st, time.monotonic() - start)
            if tty:
                out.write("\r\033[K" + line)
            elif line.split(" | ")[0] != last.split(" | ")[0]:
                out.write(line + "\n")
            out.flush()
            last = line
            if st.final:
                out.write("\n" if tty else "")
                return st
            time.sleep(poll)
    except KeyboardInterrupt:
        out.write(f"\nstopped following; the run goes on: ganops pipeline status {run_id}\n")
        raise SystemExit(130) from None


def progress_line(st: RunStatus, elapsed: float) -> str:
    """ "[r1] running stage 3/6 train step 40/100 (40%) · ETA 2 min | G=1.250 12s"."""
    if st.current_step in PIPELINE_STEPS and not st.final:
        number = PIPELINE_STEPS.index(st.current_step) + 1
        stage = f"stage {number}/{st.steps_total} {st.current_step}"
    else:
        stage = f"{st.steps_done}/{st.steps_total} stages done"
    text = f"[{st.run_id}] {st.state} {stage}"
    if st.current_step == "train" and st.train_total:
        text += " " + train_progress_text(st.train_step, st.train_total, st.train_rate)
    losses = " ".join(f"{k}={v:.3f}" for k, v in list(st.losses.items())[:3])
    return f"{text} | {losses} {elapsed:.0f}s".rstrip()


def format_status(st: RunStatus, final_details: bool = False) -> str:
    done = ",".join(PIPELINE_STEPS[: st.steps_done]) or "-"
    lines = [
        f"{st.run_id}  {st.model}  {st.state}  steps {st.steps_done}/{st.steps_total} ({done})"
    ]
    if not final_details:
        return lines[0]
    if st.failed_step or st.error:
        lines.append(f"  failed at {st.failed_step or '?'}: {st.error}")
    res = st.result
    if res is not None:
        if res.version:
            lines.append(f"  model {res.registered_model} version {res.version} (challenger)")
        if res.deploy_score is not None:
            lines.append(f"  deploy score {res.deploy_score:.4f}; gate: {res.gate_reason}")
        for name, path in res.artifacts.items():
            lines.append(f"  {name}: {path}")
    return "\n".join(lines)


def _launcher(env: CliEnv) -> PipelineLauncher:
    if env.launcher is not None:
        return env.launcher()
    from ganops.pipeline.launch import make_launcher

    return make_launcher(env.state_dir, env.kfp_host, env.mlflow_uri, env.image)


def _usage(parser: argparse.ArgumentParser, problem: str, command: str = "run") -> int:
    print(f"ganops pipeline {command}: {problem}", file=sys.stderr)
    print(parser.format_usage().rstrip(), file=sys.stderr)
    if command == "run":
        print("  run parameters: " + ", ".join(known_keys()), file=sys.stderr)
    return EXIT_USAGE
