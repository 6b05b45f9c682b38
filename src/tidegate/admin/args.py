"""Arguments of `tidegate token`, `tidegate audit` and `tidegate config`."""

from __future__ import annotations

import argparse
import os

TOKEN_HELP = """\
API tokens for upload users: the token is the password of user `__token__` for twine,
`uv publish` and `tidegate upload` (and `tidegate yank|delete|session`), limited to its scopes
(project-name patterns within the user's `upload`). Only a hash is kept: `create` prints the
token once. Runs on the server's data directory (--data-dir or --config, as `tidegate serve`).
"""


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("TIDEGATE_CONFIG"),
                        help="the server's TOML settings file (default: $TIDEGATE_CONFIG)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="the server's data directory")
    parser.add_argument("--database-url", dest="database_url", metavar="URL",
                        help="the server's PostgreSQL database, if it has one (default: $TIDEGATE_DATABASE_URL)")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser("token", help="create, list or revoke API tokens", description=TOKEN_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = token.add_subparsers(dest="token_action", required=True)
    create = actions.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--user", required=True, help="the configured [[users]] name the token acts for")
    create.add_argument("--scope", action="append", default=[], metavar="PATTERN",
                        help="project-name glob it may upload and manage; repeat for several "
                             "(default: all of the user's patterns)")
    create.add_argument("--expires", default="90d", metavar="DURATION",
                        help='lifetime such as "30d" or "12h", or "never" (default 90d)')
    add_data_options(create)
    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_data_options(listing)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", help="the id `token create` and `token list` show")
    add_data_options(revoke)

    audit = commands.add_parser("audit", help="print the audit log of uploads and release changes",
                                description="Every upload, publish, cancel, yank, delete and token change, "
                                            "oldest first: when, who, from where, what.")
    audit.add_argument("--since", metavar="WHEN",
                       help='a date or time (2026-12-01, 2026-12-01T09:30, UTC) or an age such as "7d"')
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    add_data_options(audit)

    migrate = commands.add_parser(
        "migrate", help="bring the PostgreSQL schema up to date",
        description="Apply the schema migrations the database (database_url) lacks and print them; "
                    "`tidegate serve` does the same at start-up. Safe to run again, and while instances serve.")
    add_data_options(migrate)

    commands.add_parser("config", help="print the documented settings file with every default",
                        description="Print a TOML settings file documenting every setting with its default: "
                                    "save it, edit it, pass it to `tidegate serve --config FILE`.")
