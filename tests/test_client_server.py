"""`tidegate upload` against a started tidegate, as a new user meets it: a .pypirc written for
twine, identical re-uploads, --skip-existing."""

from __future__ import annotations

import json
import sys

from support.dists import build_sdist, build_wheel, sha256_of
from support.processes import run

USERS = [{"name": "rm", "password": "pw", "upload": ["acme-*"]}]
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


async def published(tg, name="acme-core"):
    async with tg.session.get(f"{tg.url}{name}/", headers={"Accept": SIMPLE_JSON}) as r:
        return {f["filename"]: f for f in json.loads(await r.read())["files"]} if r.status == 200 else {}


async def test_a_pypirc_written_for_twine_works(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pypirc").write_text(f"[distutils]\nindex-servers = corp\n\n[corp]\nrepository = {tg.origin}/legacy/\n"
                                  "username = rm\npassword = pw\n")
    env = {**installer_env, "HOME": str(home)}
    dist = tmp_path / "dist"
    dist.mkdir()
    one, two = build_wheel(dist, "acme-core", "1.0"), build_wheel(dist, "acme-core", "2.0")
    # The section by name: Upload 2.0 beside its /legacy/ URL.
    _, out, _ = await run([sys.executable, "-m", "tidegate", "upload", "--repository-name", "corp", str(one)], env)
    assert f"published 1 file(s) ({tg.origin}/upload/session/" in out
    # The URL as twine is given it: credentials found in the section whose repository it is.
    _, out, _ = await run([sys.executable, "-m", "tidegate", "upload", "--repository", f"{tg.origin}/legacy/",
                           str(two)], env)
    assert "published 1 file(s)" in out
    # twine reads the same file.
    three = build_wheel(dist, "acme-core", "3.0")
    await run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
               "--config-file", str(home / ".pypirc"), "-r", "corp", str(three)], env)
    assert set(await published(tg)) == {one.name, two.name, three.name}


async def test_identical_reupload_succeeds_and_skip_existing_says_one_line_per_file(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    env = {**installer_env, "TIDEGATE_USERNAME": "rm", "TIDEGATE_PASSWORD": "pw"}
    upload = [sys.executable, "-m", "tidegate", "upload", "--repository", tg.origin]
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel, sdist = build_wheel(dist, "acme-core", "1.0"), build_sdist(dist, "acme-core", "1.0")
    await run(upload + [str(wheel), str(sdist)], env)

    for extra in ([], ["--skip-existing"], ["--legacy"], ["--legacy", "--skip-existing"]):
        code, out, err = await run(upload + extra + [str(wheel), str(sdist)], env)
        said = [line for line in err.splitlines() if line.startswith(("acme_core", "acme-core"))]
        if "--legacy" in extra:  # the legacy API answers an identical file with 200, as to twine
            assert sorted(said) == sorted([f"{wheel.name}: uploading ({_size(wheel)})", f"{wheel.name}: done",
                                           f"{sdist.name}: uploading ({_size(sdist)})", f"{sdist.name}: done"]), err
        else:
            assert sorted(said) == sorted(f"{f.name}: already published, identical: nothing to do"
                                          for f in (wheel, sdist)), err
            assert out == "acme-core 1.0: nothing uploaded, skipped 2 already there\n"
        assert "error" not in err.lower()

    # Other bytes under a published name: an error, unless --skip-existing (then one line).
    other = tmp_path / "other"
    other.mkdir()
    changed = build_wheel(other, "acme-core", "1.0", module_code="__version__ = 'other'\n")
    assert changed.name == wheel.name and changed.read_bytes() != wheel.read_bytes()
    code, out, err = await run(upload + [str(changed)], env, ok=False)
    assert code == 1 and "already published" in err
    code, out, err = await run(upload + ["--skip-existing", str(changed)], env)
    assert [line for line in err.splitlines() if line.startswith("acme_core")] == [
        f"{wheel.name}: skipped, a file of this name is already published"]
    assert (await published(tg))[wheel.name]["hashes"]["sha256"] == sha256_of(wheel)  # unchanged


def _size(path):
    from tidegate.client.cli import _human

    return _human(path.stat().st_size)
