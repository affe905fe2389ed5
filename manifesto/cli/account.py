"""`manifesto login` and `logout`: check credentials against the registry, then store them."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from manifesto.errors import UsageError
from manifesto.oci.reference import Reference
from manifesto.store.registry import lookup
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import (
    TOKEN_USERNAME,
    Credential,
    normalize_host,
)


def _ask(prompt: str, secret: bool = False) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"{prompt.strip(': ').lower()} required (no terminal to ask on; use --username / --password-stdin)")
    return getpass.getpass(prompt) if secret else input(prompt)


def _host(text: str) -> str:
    """The registry host of `login`/`logout`, normalized and checked like a reference's."""
    host = normalize_host(text)
    Reference.parse(f"{host}/probe")  # InvalidReference names what is wrong with the host
    return host


def login(args: argparse.Namespace) -> int:
    host = _host(args.registry)
    if args.password and args.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    username = args.username or _ask("Username: ")
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = args.password or _ask("Password: ", secret=True)
        if args.password:
            print("WARNING: --password is visible to other users; prefer --password-stdin", file=sys.stderr)
    if not username or not password:
        raise UsageError("username and password must not be empty")
    from manifesto.redact import register_secret

    register_secret(password)
    # docker's convention: the username "<token>" means the secret is an identity token
    kind = "identity_token" if username == TOKEN_USERNAME else "password"
    credential = Credential(username, password, kind)

    async def check() -> None:
        api_host = Reference(host, "x").api_host
        async with RegistryClient(api_host, credential=credential, insecure=args.insecure) as client:
            await client.check_login()

    asyncio.run(check())
    where = lookup.login(host, username, password)
    print(f"Login Succeeded ({host}, stored in {where})")
    return 0


def logout(args: argparse.Namespace) -> int:
    host = _host(args.registry)
    if lookup.logout(host):
        print(f"Removing login credentials for {host}")
    else:
        print(f"Not logged in to {host}")
    return 0
