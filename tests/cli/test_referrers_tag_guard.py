"""`copy --referrers` never overwrites what another tool keeps under a `sha256-<hex>` tag.

OCI distribution spec 1.1, "Pushing Manifests with Subject": when the referrers tag holds a
manifest other than an image index, the client reports a failure and skips the rest. Writing
our referrers index over it would lose that manifest's tag; so the copy fails (one line, exit
1), the tag keeps what it held and the destination tag does not move.
"""

from __future__ import annotations

from tests.support.content import Content, config
from tests.support.signed import dashed, write


def test_a_referrers_tag_holding_an_image_is_not_overwritten(registry, cli, probe, one_line_error, unique_repo) -> None:
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=True)
    dst = Content(registry, f"{unique_repo}/dst")
    theirs = dst.image(config(), tag=dashed(s.index.digest))  # not an index: someone else's image
    result = cli("copy", "--referrers", registry.ref(f"{unique_repo}/src", "v1"), registry.ref(f"{unique_repo}/dst", "v1"))
    one_line_error(result, 1, dashed(s.index.digest), "not an image index")
    p = probe(registry)
    assert p.tag_digest(f"{unique_repo}/dst", dashed(s.index.digest)) == theirs.digest
    assert p.tag_digest(f"{unique_repo}/dst", "v1") is None  # nothing tagged: the copy failed first
    dst.close()
