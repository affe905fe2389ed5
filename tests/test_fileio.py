"""A failed write of a report, digest file or CI output is one line naming the file, never an OSError."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifesto.errors import ManifestoError
from manifesto.fileio import write_file


@pytest.mark.parametrize("append", [False, True])
def test_a_failed_write_names_the_file_and_why(tmp_path: Path, append: bool) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "report.json"  # its "directory" is a file
    with pytest.raises(ManifestoError, match=rf"^cannot write {target}: (Not a directory|File exists)$"):
        write_file(target, b"{}", append=append)


def test_append_keeps_what_was_there(tmp_path: Path) -> None:
    out = tmp_path / "github_output"
    out.write_text("earlier=1\n")
    write_file(out, b"digest=sha256:x\n", append=True)
    assert out.read_text() == "earlier=1\ndigest=sha256:x\n"
