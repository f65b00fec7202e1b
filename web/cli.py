"""`vision-agent`: serve the API, work with datasets, print the version.

    vision-agent serve [--host H] [--port P] [--data-dir D] [--reload] [--log-level L]
    vision-agent dataset validate|import|convert|split ...   (trainer_runtime.formats.cli)
    vision-agent train --spec JOB.json [--resume]             (trainer_runtime.runner)
    vision-agent chat --url U --email E --password P [-m MESSAGE ...]  (agent.cli)
    vision-agent slack link|unlink|links ...                  (web.slack.cli, administrators)
    vision-agent weights list|import|pull ...                  (web.weights_cli: pretrained weights registry)
    vision-agent users promote EMAIL [--revoke]               (web.weights_cli: administrators)
    vision-agent version

Imports are lazy so that `vision-agent --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from web.config import Settings

PROG = "vision-agent"


def build_parser() -> argparse.ArgumentParser:
    """The `vision-agent` command line for `--help`, `serve` and `version`; the other commands are
    listed only for help, `main` hands their arguments to their own parsers."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Vision Training Agent: train computer-vision models by talking to a server."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP server", description="Run the HTTP server.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default: %(default)s)")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder for the database, storage and work files (over VTA_DATA_DIR; default: ./data)",
    )
    serve.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    sub.add_parser(
        "dataset",
        help="validate, import, convert or split datasets (see `vision-agent dataset --help`)",
        add_help=False,
    )
    sub.add_parser(
        "train",
        help="run one training job from a JSON job spec (see `vision-agent train --help`)",
        add_help=False,
    )
    sub.add_parser(
        "chat",
        help="chat with the agent in a terminal, with live progress (see `vision-agent chat --help`)",
        add_help=False,
    )
    sub.add_parser(
        "slack",
        help="link Slack users to platform users, for administrators (see `vision-agent slack --help`)",
        add_help=False,
    )
    sub.add_parser(
        "weights",
        help="list, import or pull pretrained weights of the registry (see `vision-agent weights --help`)",
        add_help=False,
    )
    sub.add_parser(
        "users",
        help="make a user an administrator (see `vision-agent users --help`)",
        add_help=False,
    )
    sub.add_parser("version", help="print the version")
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = serve_settings(args)
    if args.reload:
        # The reloader runs the app in a new process that imports `web.main:app_factory`, which
        # reads its settings from the environment: the flags reach it there (and only there).
        if args.data_dir is not None:
            os.environ["VTA_DATA_DIR"] = str(settings.data_dir)
        os.environ["VTA_CALLBACK_BASE_URL"] = settings.callback_base_url
        uvicorn.run(
            "web.main:app_factory",
            factory=True,
            host=args.host,
            port=args.port,
            reload=True,
            log_level=args.log_level,
        )
        return 0
    from web.main import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, reload=False, log_level=args.log_level)
    return 0


def serve_settings(args: argparse.Namespace) -> Settings:
    """The server's settings: the environment's (and `.env`'s), --data-dir winning over VTA_DATA_DIR,
    and VTA_CALLBACK_BASE_URL, where local trainers post their events, from --host/--port unless
    it is set."""
    from web.config import load_settings

    settings = load_settings(args.data_dir)
    if not settings.callback_base_url or "callback_base_url" not in settings.model_fields_set:
        settings = settings.model_copy(update={"callback_base_url": callback_base_url(args.host, args.port)})
    return settings


def callback_base_url(host: str, port: int) -> str:
    """The URL a trainer on this machine uses to reach a server bound to host:port (a wildcard
    address becomes loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vision-training-agent")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """The `vision-agent` entry point: runs the command named first and returns its exit status;
    without a command it prints the help."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "dataset":
        from trainer_runtime.formats.cli import main as dataset_main

        return int(dataset_main(args_list[1:]) or 0)
    if args_list and args_list[0] == "chat":
        from agent.cli import main as chat_main

        return int(chat_main(args_list[1:]))
    if args_list and args_list[0] == "slack":
        from web.slack.cli import main as slack_main

        return int(slack_main(args_list[1:], prog=f"{PROG} slack"))
    if args_list and args_list[0] in ("weights", "users"):
        from web.weights_cli import main as weights_main

        return int(weights_main(args_list[1:], prog=f"{PROG} {args_list[0]}"))
    if args_list and args_list[0] == "train":
        from trainer_runtime.runner import main as train_main

        return int(train_main(args_list[1:], prog=f"{PROG} train"))

    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "serve":
        return _serve(args)
    if args.command == "version":
        print(f"{PROG} {_version()}")
        return 0
    parser.print_help()
    return 0 if not args_list else 2


if __name__ == "__main__":
    raise SystemExit(main())
