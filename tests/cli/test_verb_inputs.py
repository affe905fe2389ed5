"""Bad inputs to the verbs give one `manifesto: error:` line naming what is wrong, before any network."""

from __future__ import annotations

import pytest

UNREACHABLE = "127.0.0.1:9/nowhere/img:1"  # never contacted: each input is refused first


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("manifesto: error: "), result.stderr
    return lines[0]


def test_a_bad_new_tag_says_what_a_tag_may_be(cli) -> None:
    result = cli("tag", UNREACHABLE, "ok", "bad tag")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "invalid tag 'bad tag'" in line and "repository" not in line


@pytest.mark.parametrize("verb", [["create", "--push", UNREACHABLE], ["create", UNREACHABLE]])
def test_a_layout_source_is_a_layout_not_a_docker_hub_image(cli, verb, tmp_path) -> None:
    # `oci:out` also parses as Docker Hub's image `oci`, tag `out`: no guess, no network
    result = cli(*verb, "oci:out", cwd=tmp_path)
    assert result.returncode == 4
    assert "no OCI image layout at" in one_error_line(result)
