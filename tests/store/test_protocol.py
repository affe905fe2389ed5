"""The real stores speak store/protocol.py exactly: every method with the declared parameters, and
each optional ability where (and only where) the store has it.

isinstance on a runtime-checkable protocol looks at method names alone; this test looks at the
signatures, so a store cannot drift from the protocol that transfer relies on.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

from manifesto.oci.digest import Digest
from manifesto.store.layout import LayoutStore
from manifesto.store.protocol import Blobs, LocalBlobs, Manifests, Mounter
from manifesto.store.registry.client import RegistryClient
from manifesto.tags import TagMove
from tests.support.memstore import MemoryStore, MountingMemoryStore


def _methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if not n.startswith("_") and inspect.isfunction(v)]


def _params(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


@pytest.mark.parametrize("store", [LayoutStore, RegistryClient, MemoryStore])
@pytest.mark.parametrize("protocol", [Manifests, Blobs])
def test_every_store_has_every_method_of_the_protocol(store: type, protocol: type) -> None:
    assert isinstance(vars(Manifests)["name"], property)
    for name in _methods(protocol):
        declared, real = getattr(protocol, name), getattr(store, name)
        if name == "write_blob" and store is RegistryClient:  # Mounter's write_blob: one more keyword
            declared = Mounter.write_blob
        assert _params(real) == _params(declared), f"{store.__name__}.{name}"
        is_async = inspect.iscoroutinefunction(real) or inspect.isasyncgenfunction(real)
        assert is_async, f"{store.__name__}.{name} is not async"


@pytest.mark.parametrize(
    "store, mounter, local",
    [(RegistryClient, True, False), (LayoutStore, False, True), (MemoryStore, False, False), (MountingMemoryStore, True, False)],
)
def test_abilities_are_where_the_store_has_them(store: type, mounter: bool, local: bool) -> None:
    for ability, has in ((Mounter, mounter), (LocalBlobs, local)):
        assert all(hasattr(store, n) for n in _methods(ability)) is has, f"{store.__name__} {ability.__name__}"
        for name in _methods(ability) if has else ():
            assert _params(getattr(store, name)) == _params(getattr(ability, name)), f"{store.__name__}.{name}"


def test_stores_are_named_for_the_place_not_the_client(tmp_path: Path) -> None:
    async def names() -> tuple[str, str, bool, bool]:
        async with RegistryClient("127.0.0.1:5999") as one, RegistryClient("127.0.0.1:5999") as two:
            same = TagMove(one, "r", "t", b"{}", "x").key == TagMove(two, "r", "t", b"{}", "x").key
            return one.name, LayoutStore(tmp_path).name, same, isinstance(one, Mounter)

    host, layout, same, mounter = asyncio.run(names())
    assert (host, layout, same, mounter) == ("127.0.0.1:5999", f"oci:{tmp_path}", True, True)
    assert isinstance(LayoutStore(tmp_path), LocalBlobs) and not isinstance(LayoutStore(tmp_path), Mounter)


def test_a_manifest_reference_may_be_a_digest_or_its_text(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path, create=True)
    raw = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    digest = asyncio.run(store.put_manifest("", Digest.of(raw), raw, "application/vnd.oci.image.index.v1+json"))
    assert asyncio.run(store.get_manifest("", digest)).raw == raw
    assert asyncio.run(store.head_manifest("", str(digest))) == asyncio.run(store.head_manifest("", digest))
