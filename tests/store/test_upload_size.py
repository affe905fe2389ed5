"""A blob whose source disagrees with its own descriptor's size is refused as bad content.

The upload declares the descriptor's size as its Content-Length; a source that gives more or
fewer bytes (a registry or a layout serving other bytes than its manifest says) must end the
upload with a one-line ContentError, not an HTTP library's protocol error, and leave no blob.
"""

from __future__ import annotations

import asyncio

import pytest

from manifesto.errors import ContentError
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient

DATA = b"manifesto upload size " * 100


async def _chunks(data: bytes):
    for i in range(0, len(data), 512):
        yield data[i : i + 512]


@pytest.mark.parametrize("given", [DATA + b"!", DATA[:-1]], ids=["longer", "shorter"])
def test_a_source_of_another_size_than_its_descriptor_is_refused(registry, tmp_path, given: bytes) -> None:
    descriptor = Descriptor("application/octet-stream", Digest.of(DATA), len(DATA))

    async def main() -> None:
        async with RegistryClient(registry.host) as client:
            with pytest.raises(ContentError, match="descriptor says") as caught:
                await client.write_blob("upload/size", descriptor, _chunks(given))
            assert "\n" not in str(caught.value)
            assert await client.blob_size("upload/size", descriptor.digest) is None
            path = tmp_path / "blob"
            path.write_bytes(given)
            with pytest.raises(ContentError, match="descriptor says"):
                await client.write_blob("upload/size", descriptor, path)

    asyncio.run(main())


def test_a_source_of_the_right_size_goes_up(registry) -> None:
    descriptor = Descriptor("application/octet-stream", Digest.of(DATA), len(DATA))

    async def main() -> None:
        async with RegistryClient(registry.host) as client:
            await client.write_blob("upload/size", descriptor, _chunks(DATA))
            assert await client.blob_size("upload/size", descriptor.digest) == len(DATA)

    asyncio.run(main())
