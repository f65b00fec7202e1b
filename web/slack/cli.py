"""`vision-agent slack ...`: the administrator's mapping of Slack users to platform users.

    vision-agent slack link --email E --slack-user U [--team T] [--data-dir D]
    vision-agent slack unlink --slack-user U [--team T] [--data-dir D]
    vision-agent slack links [--data-dir D]

It works on the server's database (DATABASE_URL, else the SQLite file under VTA_DATA_DIR /
--data-dir), migrated first. Without --team the link holds in any workspace the bot serves.
Users link themselves with a one-time code instead (`POST /api/v1/slack/link`, `/train link CODE`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser(prog: str = "vision-agent slack") -> argparse.ArgumentParser:
    """The `vision-agent slack` command line: link, unlink or list Slack users' links."""
    parser = argparse.ArgumentParser(prog=prog, description="Link Slack users to platform users (administrators).")
    parser.add_argument("--data-dir", type=Path, default=None, help="the server's data folder (over VTA_DATA_DIR)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    link = sub.add_parser("link", help="link a Slack user to the user with an email")
    link.add_argument("--email", required=True, help="the platform user's email")
    link.add_argument("--slack-user", required=True, help="the Slack user id (U012ABCDEF: profile > Copy member ID)")
    link.add_argument("--team", default="", help="the Slack workspace id (T...); default: any workspace")
    unlink = sub.add_parser("unlink", help="remove a Slack user's links")
    unlink.add_argument("--slack-user", required=True)
    unlink.add_argument("--team", default=None, help="only the link of this workspace")
    sub.add_parser("links", help="list every link (JSON lines)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "vision-agent slack") -> int:
    """Run a `vision-agent slack` action on the server's database, printing the result. Returns 1 when
    the action fails (e.g. no user with that email), else 0."""
    args = build_parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    from tools import slack_links
    from tools.db import create_engine_for_url, make_session_factory, migrate
    from tools.errors import ToolError
    from web.config import load_settings

    settings = load_settings(args.data_dir)
    engine = create_engine_for_url(settings.resolved_database_url)
    try:
        migrate(engine)
        with make_session_factory(engine)() as db:
            try:
                if args.action == "link":
                    out = slack_links.link_user(db, args.email, args.slack_user, args.team or "")
                    print(json.dumps(out))
                elif args.action == "unlink":
                    n = slack_links.unlink(db, args.slack_user, args.team)
                    print(f"removed {n} link(s)")
                else:
                    for item in slack_links.list_links(db):
                        print(json.dumps(item))
            except ToolError as exc:
                print(f"error: {exc.message}", file=sys.stderr)
                return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
