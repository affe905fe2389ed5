"""Credential lookups that start together (a run's builds): the keyring is loaded once, and a
run looks each host up once; nothing is kept from one run to the next or across hosts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import keyring.core
import pytest
from keyring.backends import null

import manifesto
from manifesto.jobs.builds import Crew, Options
from manifesto.store.registry import lookup
from manifesto.store.registry.credential import Credential
from manifesto.store.registry.lookup import CredentialStore, OncePerHost
from tests.jobs.conftest import write_matrix

THREADS = 5


def _together(work, n: int = THREADS) -> list[object]:  # type: ignore[no-untyped-def]
    """`work(i)` in n threads started at once; their results in thread order."""
    start = threading.Barrier(n, timeout=5)
    out: list[object] = [None] * n

    def one(i: int) -> None:
        start.wait()
        out[i] = work(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_lookups_starting_together_load_the_keyring_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[int] = []

    def detect(limit=None):  # type: ignore[no-untyped-def]
        loads.append(1)
        time.sleep(0.2)  # keyring importing and asking every backend
        return null.Keyring()

    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # not loaded yet in this process
    monkeypatch.setattr(keyring.core, "_detect_backend", detect)
    environ = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker")}  # MANIFESTO_KEYRING unset: auto
    found = _together(lambda i: CredentialStore(environ=environ).resolve("registry.example"))
    assert found == [None] * THREADS
    assert len(loads) == 1


def test_once_per_host_asks_each_host_once_however_many_ask_at_once() -> None:
    asked: list[str] = []
    lock = threading.Lock()

    def slow(host: str) -> Credential | None:
        with lock:
            asked.append(host)
        time.sleep(0.1)
        return Credential("alice", "s3cret") if host.lower().startswith("private") else None

    once = OncePerHost(slow)
    hosts = ["private.example", "PRIVATE.example", "public.example", "private.example", "public.example"]
    found = _together(lambda i: once(hosts[i]))
    alice = Credential("alice", "s3cret")
    assert found == [alice, alice, None, alice, None]
    assert sorted(h.lower() for h in asked) == ["private.example", "public.example"]  # once each, not across hosts


def test_a_runs_buildah_builds_share_one_lookup_and_the_next_run_asks_again(
    tmp_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def resolve(host: str, *, store: CredentialStore | None = None) -> Credential | None:
        asked.append(host)
        time.sleep(0.05)
        return None

    monkeypatch.setattr(lookup, "resolve", resolve)
    plan = manifesto.plan(write_matrix(tmp_path, "127.0.0.1:5000/team/app"), builder="buildah")
    for run in (1, 2):
        builder = Crew(plan, Options()).builders["buildah"]
        assert _together(lambda i: builder.credentials("registry.example")) == [None] * THREADS  # type: ignore[attr-defined]
        assert asked == ["registry.example"] * run


def test_a_failed_lookup_is_the_answer_for_everyone_waiting() -> None:
    """A credential helper that fails is run once, not once per waiting build."""
    import threading

    from manifesto.errors import AuthError
    from manifesto.store.registry.lookup import OncePerHost

    runs: list[str] = []

    def failing(host: str):  # type: ignore[no-untyped-def]
        runs.append(host)
        time.sleep(0.2)
        raise AuthError(f"credential helper for {host} failed")

    once = OncePerHost(failing)
    errors: list[str] = []

    def ask() -> None:
        try:
            once("registry.example")
        except AuthError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=ask) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == ["registry.example"] and len(errors) == 5


def test_an_answer_is_kept_for_its_time_only() -> None:
    from manifesto.store.registry.lookup import OncePerHost

    runs: list[str] = []
    once = OncePerHost(lambda host: runs.append(host), ttl=0.1)  # type: ignore[func-returns-value]
    once("registry.example")
    once("registry.example")
    time.sleep(0.15)
    once("registry.example")
    assert runs == ["registry.example"] * 2
