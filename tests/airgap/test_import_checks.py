"""What import checks on its fast path: a blob the mirror already holds is not copied again,
but its bytes in the bundle are still hashed, so a tampered one refuses the bundle whole."""

from __future__ import annotations

import tarfile

from .mirror import tidegate_cmd
from .test_bundles import _export, _refused, source  # noqa: F401  (source is a fixture)


async def test_a_tampered_byte_in_a_file_already_here_is_still_refused(source, tmp_path):  # noqa: F811
    tg, _ = source
    mirror, first, second = tmp_path / "mirror", tmp_path / "first.tgb", tmp_path / "second.tgb"
    await _export(tg, first)
    code, out = await tidegate_cmd("import", str(first), "--data-dir", str(mirror))
    assert code == 0, out
    await _export(tg, second)  # another bundle id, the same files: every blob is already in the mirror
    data = bytearray(second.read_bytes())
    with tarfile.open(second) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("files/"))
    data[member.offset_data + member.size - 1] ^= 0x01
    second.write_bytes(bytes(data))
    assert "does not match its sha256" in await _refused(second, mirror)
