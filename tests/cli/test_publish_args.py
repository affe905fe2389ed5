"""Command-line overrides of platforms.yaml are held to the same rules as the file."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_image_override_that_makes_an_arch_tag_clash_with_the_index_is_refused(run_cli):
    # platforms.yaml: arch_tag "{registry}/{arch_ns}/{name}:{tag}"; with this --image the arm64
    # per-arch reference would be the index's own reference.
    rc, out, err = run_cli(
        "publish", "-f", str(REPO / "platforms.yaml"), "--dry-run",
        "--image", "127.0.0.1:5000/arm64v8/hello", "--tag", "1.0.0",
    )  # fmt: skip
    assert rc == 2, err
    assert err.count("manifesto: error:") == 1 and "index's own reference" in err, err
    assert out == ""


def test_overrides_show_up_in_the_plan(run_cli):
    rc, out, err = run_cli(
        "publish", "-f", str(REPO / "platforms.yaml"), "--dry-run",
        "--image", "127.0.0.1:5000/team/hello", "--tag", "2.0.0", "--platform", "aarch64", "--allow-partial",
    )  # fmt: skip
    assert rc == 0, err
    assert "127.0.0.1:5000/arm64v8/hello:2.0.0" in out and "linux/arm64/v8" in out
    assert "linux/s390x" not in out and "1.0.0" not in out


def test_copy_takes_src_dst_and_insecure_as_docs_cli_md_says() -> None:
    from manifesto.cli.main import build_parser

    args = build_parser().parse_args(["copy", "oci:./out:1.0", "docker://localhost:5000/x:1", "--insecure"])
    assert (args.source, args.destination, args.insecure) == ("oci:./out:1.0", "docker://localhost:5000/x:1", True)
    assert build_parser().parse_args(["copy", "a", "b"]).insecure is False
    synopsis = re.search(r"^`manifesto copy SRC DST [^`]*`", (REPO / "docs" / "cli.md").read_text(), re.M)
    assert synopsis and "[--insecure]" in synopsis.group(0)
