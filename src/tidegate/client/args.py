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
`list` shows the open publishing sessions of every project you may upload, with their stage
and session URLs. `status`, `publish` and `cancel` act on one, such as those staged with
`tidegate upload --stage`: ID is its session URL, or its session token with --repository
(tidegate serves sessions at <repository>/upload/session/<token>).
"""

YANK_HELP = """\
Mark a published local file, or every file of a release, as yanked (PEP 592): installers skip
it unless a requirement pins its exact version. Over HTTP (<repository>/manage/) with the
usual credentials, which must be allowed to upload the project; with --data-dir or --config,
on the server's data directory instead. Running servers see the change at once.
"""

DELETE_HELP = """\
Delete a published local file, or every file of a release, through <repository>/manage/.
Installs pinned to it fail from then on; `tidegate yank` is the gentle alternative.
"""

CREDENTIALS_HELP = """\
Credentials (HTTP Basic; an API token is the password of user __token__) come from
--username/--password, else TIDEGATE_USERNAME and TIDEGATE_PASSWORD, else TWINE_USERNAME and
TWINE_PASSWORD, else ~/.pypirc: the section named by --repository-name, or the index server
whose `repository` is the repository URL. The repository is --repository, else the
--repository-name section's `repository`, else TIDEGATE_REPOSITORY, else TWINE_REPOSITORY_URL,
else %s. Any of the server's API URLs will do (a twine-style .../legacy/ too).
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

    session = subparsers.add_parser("session", help="list your open sessions; status, publish or cancel one",
                                    description=SESSION_HELP, epilog=CREDENTIALS_HELP,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    session.add_argument("action", choices=["list", "status", "publish", "cancel"])
    session.add_argument("id", metavar="ID", nargs="?",
                         help="session URL, or session token with --repository (not for list)")
    _add_target_options(session)

    yank = subparsers.add_parser("yank", help="yank (or un-yank) a local file or release (PEP 592)",
                                 description=YANK_HELP, epilog=CREDENTIALS_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    yank.add_argument("target", nargs="+", metavar="FILE | NAME VERSION",
                      help="a published file (acme_core-2.0-py3-none-any.whl), or a project and version")
    yank.add_argument("--reason", default="", help="why it was yanked (shown by pip and uv)")
    yank.add_argument("--undo", action="store_true", help="un-yank instead")
    _add_target_options(yank)
    yank.add_argument("--data-dir", dest="data_dir", metavar="DIR",
                      help="work on this server data directory instead of over HTTP")
    yank.add_argument("--config", metavar="FILE", help="work on the data directory this settings file names")
    yank.add_argument("--database-url", dest="database_url", metavar="URL",
                      help="with --data-dir: the server's PostgreSQL database (default: $TIDEGATE_DATABASE_URL)")

    delete = subparsers.add_parser("delete", help="delete a local file or release for good",
                                   description=DELETE_HELP, epilog=CREDENTIALS_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    delete.add_argument("target", nargs="+", metavar="FILE | NAME VERSION",
                        help="a published file, or a project and version (all its files)")
    _add_target_options(delete)


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
