"""The README's upload, publish, token and release-management commands work as printed: each is
taken from the README itself and run against a started tidegate, with only the host, the
password and the placeholders (<token>, <id>, paths) filled in."""

from __future__ import annotations

import asyncio
import glob
import json
import re
import shlex
import sys
from pathlib import Path

from support.dists import build_sdist, build_wheel

README = Path(__file__).resolve().parents[1] / "README.md"
USERS = [{"name": "release-bot", "password": "rb-secret", "upload": ["acme-*"]}]


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def commands(text: str) -> list[str]:
    """The shell lines of the section's ```sh blocks."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines += [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines


def one(lines: list[str], pattern: str) -> str:
    found = [line for line in lines if re.search(pattern, line)]
    assert len(found) == 1, (pattern, found)
    return found[0]


async def run(line: str, fill: dict[str, str], env: dict[str, str], cwd: Path) -> str:
    for placeholder, value in fill.items():
        line = line.replace(placeholder, value)
    argv = []
    for word in shlex.split(line, comments=True):
        argv += sorted(glob.glob(str(cwd / word))) if "*" in word else [word]
    tool = {"tidegate": ["-m", "tidegate"], "twine": ["-m", "twine"], "uv": ["-m", "uv"], "pip": ["-m", "pip"]}
    argv = [sys.executable, *tool[argv[0]], *argv[1:]]
    if "install" in argv:  # never into the test's own environment
        argv += ["--target", str(cwd / f"target-{len(list(cwd.glob('target-*')))}")]
        if argv[2] == "uv":
            argv += ["--python", sys.executable]
    proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, (line, (out + err).decode())
    return out.decode() + err.decode()


async def test_the_readme_upload_commands_work_as_printed(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    home = tmp_path / "home"
    home.mkdir()
    env = {**installer_env, "HOME": str(home), "TWINE_NON_INTERACTIVE": "1"}
    config = tmp_path / "tidegate.toml"
    config.write_text(f'data_dir = "{tg.settings.data_dir}"\nupstreams = []\n'
                      '[[users]]\nname = "release-bot"\npassword = "rb-secret"\nupload = ["acme-*"]\n')
    build_wheel(tmp_path / "dist", "acme-core", "2.0")
    build_sdist(tmp_path / "dist", "acme-core", "2.0")
    fill = {"http://127.0.0.1:5780": tg.origin, "-p ...": "-p rb-secret", "/etc/tidegate.toml": str(config),
            "/srv/tidegate": str(tg.settings.data_dir)}
    lines = commands(section("Uploading"))

    out = await run(one(lines, r"^tidegate upload --stage"), fill, env, tmp_path)
    fill["<token>"] = re.search(r"/stage/([^/\s]+)/simple/", out).group(1)
    await run(one(lines, r"^pip install .*/stage/"), fill, env, tmp_path)
    await run(one(lines, r"^uv pip install .*/stage/"), fill, env, tmp_path)
    assert "acme-core 2.0  open" in await run(one(lines, r"^tidegate session list"), fill, env, tmp_path)
    assert "published" in await run(one(lines, r"^tidegate session publish"), fill, env, tmp_path)
    await run(one(lines, r"^twine upload"), fill, env, tmp_path)  # the same files again: fine
    await run(one(lines, r"^uv publish"), fill, env, tmp_path)

    out = await run(one(lines, r"^tidegate token create"), fill, env, tmp_path)
    token = next(word for word in out.split() if word.startswith("tdg_"))
    listing = await run(one(lines, r"^tidegate token list"), fill, env, tmp_path)
    fill["<id>"] = listing.split()[0]

    await run(one(lines, r"^tidegate yank .*--reason"), fill, env, tmp_path)
    async with tg.session.get(f"{tg.url}acme-core/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}) as r:
        assert {f["filename"]: f.get("yanked") for f in json.loads(await r.read())["files"]}[
            "acme_core-2.0-py3-none-any.whl"] == "broken build"
    await run(one(lines, r"^tidegate yank .*--undo"), fill, env, tmp_path)
    await run(one(lines, r"^tidegate yank --data-dir"), fill, env, tmp_path)
    await run(one(lines, r"^tidegate delete"), fill, env, tmp_path)
    async with tg.session.get(f"{tg.url}acme-core/") as r:
        assert r.status == 404  # nothing of it is left
    await run(one(lines, r"^tidegate token revoke"), fill, env, tmp_path)

    # The cancel line, on a second staged release.
    build_wheel(tmp_path / "dist", "acme-core", "2.1")
    out = await run(one(lines, r"^tidegate upload --stage").replace("dist/*", "dist/*2.1*"), fill, env, tmp_path)
    fill["<token>"] = re.search(r"/stage/([^/\s]+)/simple/", out).group(1)
    assert "canceled" in await run(one(lines, r"^tidegate session cancel"), fill, env, tmp_path)
    audit = await run("tidegate audit --config /etc/tidegate.toml --since 7d", fill, env, tmp_path)
    assert "token-revoke" in audit and "cancel acme-core 2.1" in audit and token not in audit
