"""Registry error answers in every shape (distribution JSON, proxies' text and HTML, nothing) → one line."""

from __future__ import annotations

import json

import pytest

from manifesto.cli.main import exit_code
from manifesto.errors import AuthError, ManifestoError, NotFound, RegistryError
from manifesto.store.registry.errors import error_for, parse_body

WHAT = "manifest example.com/a:1"


def _errors(*errs: dict) -> bytes:
    return json.dumps({"errors": list(errs)}).encode()


@pytest.mark.parametrize(
    "body, content_type, code, message",
    [
        # distribution, one error with a string detail
        (
            _errors({"code": "BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": "sha256:abc"}),
            "application/json; charset=utf-8",
            "BLOB_UNKNOWN",
            "blob unknown to registry (sha256:abc)",
        ),
        # object detail (distribution's MANIFEST_UNKNOWN) is not dumped into the line
        (
            _errors({"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "x"}}),
            "application/json",
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        ),
        # several errors: first code, every message
        (
            _errors(
                {"code": "DENIED", "message": "requested access to the resource is denied"},
                {"code": "UNAUTHORIZED", "message": "authentication required", "detail": "ignored"},
            ),
            "application/json",
            "DENIED",
            "requested access to the resource is denied; authentication required",
        ),
        (_errors({"code": "TOOMANYREQUESTS", "message": "slow down", "detail": 5}), "", "TOOMANYREQUESTS", "slow down (5)"),
        (_errors({"code": "UNSUPPORTED"}), "", "UNSUPPORTED", "UNSUPPORTED"),  # no message: the code
        (_errors({"code": "X", "detail": "only detail"}), "", "X", "X (only detail)"),
        # JSON without an errors list
        (b'{"message":"rate limited"}', "application/json", None, "rate limited"),
        (b'{"error":"invalid_grant","error_description":"token expired"}', "application/json", None, "token expired"),
        (b'{"detail":"nope"}', "application/json", None, "nope"),
        (b'{"errors":[]}', "application/json", None, '{"errors":[]}'),
        (b'{"errors":"bad"}', "application/json", None, '{"errors":"bad"}'),
        (b'{"foo":1}', "application/json", None, '{"foo":1}'),
        (b"[1, 2]", "application/json", None, "[1, 2]"),
        (b"null", "application/json", None, "null"),
        # plain text from a proxy
        (b"upstream connect error or disconnect/reset before headers\n", "text/plain", None, "upstream connect error or disconnect/reset before headers"),
        (b"  too\n many\r\n   lines \n", "text/plain", None, "too many lines"),
        # HTML: title, or the text without tags
        (
            b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
            "text/html",
            None,
            "502 Bad Gateway",
        ),
        (b"<html><body><h1>Forbidden &amp; gone</h1>\n<p>nope</p></body></html>", "text/html; charset=utf-8", None, "Forbidden & gone nope"),
        (b"<!DOCTYPE html>\n<html><body><p>x</p></body></html>", "", None, "x"),  # HTML without Content-Type
        (b"<TITLE>\n  Service\n Unavailable </TITLE>", "TEXT/HTML", None, "Service Unavailable"),
        # nothing
        (b"", "", None, ""),
        (b" \n\t ", "text/plain", None, ""),
    ],
)
def test_parse_body(body: bytes, content_type: str, code: str | None, message: str) -> None:
    assert parse_body(body, content_type) == (code, message)


def test_garbage_bytes_give_one_printable_line() -> None:
    code, message = parse_body(b"\xff\xfe\x00garbage\x80\x1b[31mred\x07\n\x00", "application/octet-stream")
    assert code is None
    assert "garbage" in message and "red" in message
    assert message.isprintable(), repr(message)  # no NUL, no terminal escapes


def test_json_messages_are_one_line_too() -> None:
    _, message = parse_body(_errors({"code": "X", "message": "first\nsecond\x1b[2J"}))
    assert "\n" not in message and message.isprintable(), repr(message)
    assert "first" in message and "second" in message


def test_very_long_text_is_truncated_to_one_line() -> None:
    body = ("line of an enormous stack trace\n" * 500).encode()
    _, message = parse_body(body, "text/plain")
    assert "\n" not in message
    assert len(message) <= 201
    assert message.endswith("…")
    assert message.startswith("line of an enormous stack trace line of")


def test_text_at_the_limit_is_not_marked_truncated() -> None:
    _, message = parse_body(b"x" * 200, "text/plain")
    assert message == "x" * 200


# ---- status → error class -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, cls",
    [
        (401, b"", AuthError),
        (403, b"", AuthError),
        (403, b"<html><title>Forbidden</title></html>", AuthError),
        (400, _errors({"code": "DENIED", "message": "x"}), AuthError),
        (400, _errors({"code": "UNAUTHORIZED", "message": "x"}), AuthError),
        (404, b"", NotFound),
        (404, b"404 page not found", NotFound),
        (400, _errors({"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}), NotFound),
        (404, _errors({"code": "BLOB_UPLOAD_UNKNOWN", "message": "blob upload unknown to registry"}), NotFound),
        (400, _errors({"code": "MANIFEST_INVALID", "message": "manifest invalid"}), RegistryError),
        (400, _errors({"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry"}), RegistryError),
        (405, _errors({"code": "UNSUPPORTED", "message": "The operation is unsupported."}), RegistryError),
        (500, b"oops", RegistryError),
        (502, b"<html><title>502 Bad Gateway</title></html>", RegistryError),
        (418, b"", RegistryError),
    ],
)
def test_error_for_maps_status_and_code(status: int, body: bytes, cls: type[ManifestoError]) -> None:
    err = error_for(status, body, "", WHAT)
    assert type(err) is cls
    message = str(err)
    assert message.startswith(WHAT + ": ")
    assert "\n" not in message


def test_auth_error_message() -> None:
    err = error_for(401, _errors({"code": "UNAUTHORIZED", "message": "authentication required"}), "application/json", WHAT)
    assert str(err) == f"{WHAT}: access denied (HTTP 401, UNAUTHORIZED): authentication required"
    assert exit_code(err) == 3


def test_not_found_message() -> None:
    err = error_for(404, _errors({"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}), "application/json", WHAT)
    assert str(err) == f"{WHAT}: not found: manifest unknown"
    assert exit_code(err) == 4


def test_registry_error_carries_status_and_code() -> None:
    err = error_for(400, _errors({"code": "MANIFEST_INVALID", "message": "manifest invalid", "detail": "too big"}), "", WHAT)
    assert isinstance(err, RegistryError)
    assert (err.status, err.code) == (400, "MANIFEST_INVALID")
    assert str(err) == f"{WHAT}: registry answered HTTP 400 MANIFEST_INVALID: manifest invalid (too big)"


def test_registry_error_without_body() -> None:
    err = error_for(503, b"", "", WHAT)
    assert isinstance(err, RegistryError)
    assert (err.status, err.code) == (503, None)
    assert str(err) == f"{WHAT}: registry answered HTTP 503"
