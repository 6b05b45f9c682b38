"""Command-line arguments of `tidegate upload` and `tidegate session`.

Kept apart from the client itself so that building the parser imports no HTTP library: the
server's supervisor process builds it too and should stay small.
"""

from __future__ import annotations

import argparse

DEFAULT_REPOSITORY = "http://127.0.0.1:5780"

UPLOAD_HELP = """\
Upload wheels and sdists with the Upload 2.0 protocol (PEP 694): one publishing session per
project name and version, files uploaded in parallel, then every session published (or, with
--stage, left staged for testing). If the repository has no Upload 2.0 endpoint
(<repository>/upload/), files go to the legacy API (<repository>/legacy/) instead.
On failure or Ctrl-C, the sessions created by this command are canceled.
"""

SESSION_HELP = """\
Query, publish or cancel a publishing session staged with `tidegate upload --stage`.
ID is the session URL that command printed, or the session token with --repository
(tidegate serves sessions at <repository>/upload/session/<token>).
"""

CREDENTIALS_HELP = """\
Credentials (HTTP Basic) come from --username/--password, else TIDEGATE_USERNAME and
TIDEGATE_PASSWORD, else ~/.pypirc: the section named by --repository-name, or the index server
whose `repository` is the repository URL. The repository is --repository, else the
--repository-name section's `repository`, else TIDEGATE_REPOSITORY, else %s.
""" % DEFAULT_REPOSITORY


class UsageError(Exception):
    pass


# --- parsers -----------------------------------------------------------------------------------


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the `upload` and `session` commands to the main CLI's subparsers."""
    upload = subparsers.add_parser("upload", help="upload distributions (Upload 2.0, legacy fallback)",
                                   description=UPLOAD_HELP, epilog=CREDENTIALS_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    upload.add_argument("files", nargs="+", metavar="FILE", help="wheels and sdists, e.g. dist/*")
    upload.add_argument("--stage", action="store_true",
                        help="upload but do not publish; print the stage and session URLs")
    upload.add_argument("--skip-existing", action="store_true",
                        help="skip files the repository already has instead of failing")
    upload.add_argument("--jobs", "-j", type=_positive, default=4, metavar="N",
                        help="files uploaded in parallel per session (default 4)")
    upload.add_argument("--legacy", action="store_true",
                        help="use the legacy upload API even if Upload 2.0 is available")
    _add_target_options(upload)

    session = subparsers.add_parser("session", help="status, publish or cancel a staged session",
                                    description=SESSION_HELP, epilog=CREDENTIALS_HELP,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    session.add_argument("action", choices=["status", "publish", "cancel"])
    session.add_argument("id", metavar="ID", help="session URL, or session token with --repository")
    _add_target_options(session)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", metavar="URL",
                        help=f"repository base URL (default $TIDEGATE_REPOSITORY, else {DEFAULT_REPOSITORY})")
    parser.add_argument("--repository-name", metavar="NAME", help="use this ~/.pypirc section")
    parser.add_argument("--username", "-u", help="user name (default $TIDEGATE_USERNAME, else ~/.pypirc)")
    parser.add_argument("--password", "-p", help="password or token (default $TIDEGATE_PASSWORD, else ~/.pypirc)")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


# --- entry points ------------------------------------------------------------------------------
