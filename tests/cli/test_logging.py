"""Log setup: renderer choice, level filtering, and the one redaction processor.

The redaction tests log real events through the configured pipeline into a buffer and
scan the whole output for every secret string, so nothing escapes via a renderer.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import structlog

from manifesto import redact
from manifesto.cli import logging as mlog
from manifesto.store.registry.lookup import Credential


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    mlog.reset()
    redact.clear_secrets()


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def json_logs(verbosity: int = 0, debug: bool = True) -> io.StringIO:
    buf = io.StringIO()
    mlog.configure(verbosity=verbosity, debug=debug, stream=buf, json=True)
    return buf


# -- redaction through the whole pipeline ----------------------------------------------------


SECRETS = [
    "SECRET-bearer-in-header-dict",
    "c2VjcmV0LWJhc2ljOnB3ZA==",  # base64 of a basic credential
    "SECRET-cookie-value",
    "SECRET-state-value",
    "SECRET-userinfo-pass",
    "SECRET-registered-password",
    "SECRET-nested-token",
    "SECRET-pair-bearer",
    "SECRET-top-password",
    "SECRET-identity-token",
    "SECRET-refresh-token",
    "SECRET-amz-signature",
    "SECRET-amz-credential",
    "SECRET-exception-pass",
    "SECRET-stdlib-state",
    "SECRET-dataclass-secret",
    "SECRET-bytes-token",
    "SECRET-form-refresh",
]


def emit_everything() -> None:
    log = structlog.get_logger()
    redact.register_secret("SECRET-registered-password")
    log.warning(
        "request_sent",
        method="GET",
        headers={"Authorization": "Bearer SECRET-bearer-in-header-dict", "Accept": "application/json"},
    )
    log.warning(
        "response_received",
        headers=httpx.Headers(
            {
                "authorization": "Basic c2VjcmV0LWJhc2ljOnB3ZA==",
                "Cookie": "sid=SECRET-cookie-value",
                "Docker-Content-Digest": "sha256:abc123",
            }
        ),
    )
    log.warning(
        "upload_location",
        url="https://reg.example/v2/lib/app/blobs/uploads/u-1?_state=SECRET-state-value&digest=sha256:abc123",
    )
    log.warning("registry_url", url="https://bob:SECRET-userinfo-pass@reg.example/v2/")
    log.warning("login_failed", message="registry rejected SECRET-registered-password for bob")
    log.warning(
        "nested",
        steps=[{"token": "SECRET-nested-token", "repo": "lib/app"}, ["keep-me", ("Authorization", "Bearer SECRET-pair-bearer")]],
    )
    log.warning(
        "token_fetched",
        password="SECRET-top-password",
        identity_token="SECRET-identity-token",
        Refresh_Token="SECRET-refresh-token",
        expires_in=300,
    )
    log.warning(
        "blob_redirect",
        location="https://s3.example/b?X-Amz-Algorithm=AWS4&X-Amz-Credential=SECRET-amz-credential"
        "&X-Amz-Signature=SECRET-amz-signature&X-Amz-Expires=1200",
    )
    try:
        raise RuntimeError("cannot reach https://carol:SECRET-exception-pass@reg.example/v2/")
    except RuntimeError:
        log.exception("push_failed", repo="lib/app")
    logging.getLogger("httpx").warning(
        'HTTP Request: %s %s "%s"', "PATCH", "https://reg.example/v2/x/blobs/uploads/u?_state=SECRET-stdlib-state", "HTTP/1.1 202"
    )
    log.warning("credential_used", credential=Credential("dave", "SECRET-dataclass-secret"))
    log.warning("raw_body", body=b"grant_type=refresh_token&refresh_token=SECRET-form-refresh&service=reg")
    log.warning("raw_headers", pairs=[(b"x-registry-auth", b"SECRET-bytes-token")])


def test_no_secret_survives_json_output() -> None:
    buf = json_logs()
    emit_everything()
    out = buf.getvalue()
    for secret in SECRETS:
        assert secret not in out, secret
    events = {e["event"]: e for e in lines(buf) if "event" in e}

    assert events["request_sent"]["headers"] == {"Authorization": "[REDACTED]", "Accept": "application/json"}
    assert events["response_received"]["headers"]["docker-content-digest"] == "sha256:abc123"
    assert events["response_received"]["headers"]["authorization"] == "[REDACTED]"
    assert events["upload_location"]["url"] == (
        "https://reg.example/v2/lib/app/blobs/uploads/u-1?_state=REDACTED&digest=sha256:abc123"
    )
    assert events["registry_url"]["url"] == "https://bob:REDACTED@reg.example/v2/"
    assert events["login_failed"]["message"] == "registry rejected [REDACTED] for bob"
    assert events["nested"]["steps"][0] == {"token": "[REDACTED]", "repo": "lib/app"}
    assert events["nested"]["steps"][1][0] == "keep-me"
    assert events["token_fetched"]["expires_in"] == 300
    assert "X-Amz-Expires=1200" in events["blob_redirect"]["location"]
    assert "RuntimeError" in events["push_failed"]["exception"]
    assert "https://carol:REDACTED@reg.example/v2/" in events["push_failed"]["exception"]
    assert events["credential_used"]["credential"]["username"] == "dave"
    assert "service=reg" in events["raw_body"]["body"]
    stdlib = [e for e in lines(buf) if e.get("logger") == "httpx"]
    assert len(stdlib) == 1
    assert "/v2/x/blobs/uploads/u?_state=REDACTED" in stdlib[0]["event"]


def test_no_secret_survives_console_output() -> None:
    buf = TTY()
    mlog.configure(verbosity=0, debug=True, stream=buf)
    emit_everything()
    out = buf.getvalue()
    for secret in SECRETS:
        assert secret not in out, secret
    assert "manifesto: warning: request sent" in out and "application/json" in out and "lib/app" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln", "Authorization: Bearer [REDACTED]"),
        ("authorization: basic dXNlcjpwYXNz", "authorization: basic [REDACTED]"),
        (
            'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"',
            'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"',
        ),
        ('Basic realm="Registry Realm"', 'Basic realm="Registry Realm"'),
        ("https://tok@github.example/x.git", "https://REDACTED@github.example/x.git"),
        ("https://u:p@ss@host/x", "https://u:REDACTED@host/x"),
        ("https://host/x?a=1&token=abc&b=2#frag", "https://host/x?a=1&token=REDACTED&b=2#frag"),
        ("https://host/x?sig=abc&Signature=def", "https://host/x?sig=REDACTED&Signature=REDACTED"),
        ("grant_type=password&username=u&password=pw", "grant_type=password&username=u&password=REDACTED"),
        ('{"token": "abc", "expires_in": 300}', '{"token": "[REDACTED]", "expires_in": 300}'),
        ("{'password': 'pw', 'user': 'u'}", "{'password': '[REDACTED]', 'user': 'u'}"),
        ("login failed: password=hunter22 for bob", "login failed: password=[REDACTED] for bob"),
        ("digest sha256:abc in repo lib/app", "digest sha256:abc in repo lib/app"),
        ("https://reg.example:5000/v2/_catalog?n=100", "https://reg.example:5000/v2/_catalog?n=100"),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert redact.scrub(text) == expected
    assert redact.scrub(expected) == expected  # idempotent


def test_redact_secrets_keys_case_insensitively_and_keeps_absence() -> None:
    out = redact.redact_secrets(
        None,
        "info",
        {
            "event": "x",
            "AUTHORIZATION": "Basic abc",
            "Proxy-Authorization": "Basic abc",
            "set-cookie": "a=b",
            "IdentityToken": "t",
            "access_token": "t",
            "auth": "dXNlcjpwdw==",
            "registry_password": "pw",
            "token": None,
            "secret": "",
            "count": 3,
        },
    )
    assert out == {
        "event": "x",
        "AUTHORIZATION": "[REDACTED]",
        "Proxy-Authorization": "[REDACTED]",
        "set-cookie": "[REDACTED]",
        "IdentityToken": "[REDACTED]",
        "access_token": "[REDACTED]",
        "auth": "[REDACTED]",
        "registry_password": "[REDACTED]",
        "token": None,
        "secret": "",
        "count": 3,
    }


def test_redact_secrets_makes_unknown_objects_plain() -> None:
    @dataclass(frozen=True)
    class Login:
        host: str
        token: str

    out = redact.redact_secrets(
        None,
        "info",
        {
            "event": "x",
            "url": httpx.URL("https://u:url-secret@reg.example/v2/?_state=st-secret"),
            "login": Login("reg.example", "dc-token-secret"),
            "tags": {"v1"},
            "error": ValueError("bad password=err-secret"),
        },
    )
    text = json.dumps(out)
    for secret in ("url-secret", "st-secret", "dc-token-secret", "err-secret"):
        assert secret not in text
    assert out["url"] == "https://u:REDACTED@reg.example/v2/?_state=REDACTED"
    assert out["login"] == {"host": "reg.example", "token": "[REDACTED]"}
    assert out["tags"] == ["v1"]
    assert out["error"].startswith("ValueError: bad password=")


def test_deep_nesting_is_cut_off() -> None:
    value: list = ["Bearer deep-secret-token"]
    for _ in range(50):
        value = [value]
    out = json.dumps(redact.redact_secrets(None, "info", {"event": "x", "v": value}))
    assert "deep-secret-token" not in out


def test_register_secret_skips_short_values_and_covers_percent_encoding() -> None:
    buf = json_logs()
    redact.register_secret("abc")  # too short: would blank out ordinary words
    redact.register_secret(None)
    redact.register_secret("p@ss/word+1")
    redact.register_secret("p@ss/word+1")  # twice is fine
    structlog.get_logger().warning("note", a="abc def", b="sent p%40ss%2Fword%2B1 and p@ss/word+1")
    (event,) = lines(buf)
    assert event["a"] == "abc def"
    assert event["b"] == "sent [REDACTED] and [REDACTED]"


def test_longer_registered_secret_wins_over_its_prefix() -> None:
    redact.register_secret("tok-1234")
    redact.register_secret("tok-1234-extended")
    assert redact.scrub("x tok-1234-extended y") == "x [REDACTED] y"


# -- renderer choice ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [TTY, io.StringIO])
def test_plain_lines_on_a_terminal_and_off_it(stream: type) -> None:
    """A CI log is not a terminal, and people read it: plain lines there too, never JSON."""
    buf = stream()
    mlog.configure(verbosity=0, debug=False, stream=buf)
    structlog.get_logger().warning("disk_full", path="/var/lib", free="0 B", sizes=[1, 2])
    logging.getLogger("some.lib").warning("it %s", "broke")
    assert buf.getvalue().splitlines() == [
        'manifesto: warning: disk full path=/var/lib free="0 B" sizes=[1,2]',
        "manifesto: warning: some.lib: it broke",
    ]
    assert "\x1b[" not in buf.getvalue()


@pytest.mark.parametrize("stream", [TTY, io.StringIO])
def test_json_lines_only_when_asked(stream: type) -> None:
    buf = stream()
    mlog.configure(verbosity=0, debug=False, stream=buf, json=True)
    structlog.get_logger().warning("disk_full", path="/var/lib")
    (event,) = lines(buf)
    assert event["event"] == "disk_full"
    assert event["level"] == "warning"
    assert event["path"] == "/var/lib"
    assert "timestamp" in event


def test_a_plain_line_keeps_a_traceback_indented_and_redacted() -> None:
    buf = io.StringIO()
    mlog.configure(verbosity=0, debug=True, stream=buf)
    try:
        raise RuntimeError("cannot reach https://carol:SECRET-in-trace@reg.example/v2/")
    except RuntimeError:
        structlog.get_logger().exception("push_failed", value="x\ny")
    first, *rest = buf.getvalue().splitlines()
    assert first == 'manifesto: error: push failed value="x\\ny"'
    assert rest and all(line.startswith("  ") for line in rest)
    assert "SECRET-in-trace" not in buf.getvalue() and "carol:REDACTED@" in buf.getvalue()


def test_default_stream_is_stderr_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    mlog.configure(verbosity=0, debug=False)
    structlog.get_logger().warning("to_stderr")
    captured = capsys.readouterr()
    assert "to stderr" in captured.err
    assert captured.out == ""


# -- levels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verbosity", "debug", "shown"),
    [
        (0, False, ["warning_event", "error_event"]),
        (1, False, ["info_event", "warning_event", "error_event"]),
        (2, False, ["debug_event", "info_event", "warning_event", "error_event"]),
        (0, True, ["debug_event", "info_event", "warning_event", "error_event"]),
    ],
)
def test_level_filtering(verbosity: int, debug: bool, shown: list[str]) -> None:
    buf = json_logs(verbosity, debug)
    log = structlog.get_logger()
    log.debug("debug_event")
    log.info("info_event")
    log.warning("warning_event")
    log.error("error_event")
    assert [e["event"] for e in lines(buf)] == shown


@pytest.mark.parametrize(("verbosity", "debug", "shown"), [(1, False, False), (0, True, True)])
def test_third_party_info_only_with_debug(verbosity: int, debug: bool, shown: bool) -> None:
    buf = json_logs(verbosity, debug)
    logging.getLogger("httpx").info("HTTP Request: GET https://reg.example/v2/ 200")
    logging.getLogger("httpcore.http11").debug("send_request_headers.started")
    logging.getLogger("tenacity").warning("retrying")
    events = [e["event"] for e in lines(buf)]
    assert ("HTTP Request: GET https://reg.example/v2/ 200" in events) is shown
    assert "send_request_headers.started" not in events  # httpcore's byte-level chatter stays off
    assert "retrying" in events


def test_reconfigure_replaces_the_previous_setup() -> None:
    first, second = io.StringIO(), io.StringIO()
    mlog.configure(verbosity=0, debug=False, stream=first, json=True)
    mlog.configure(verbosity=0, debug=False, stream=second, json=True)
    structlog.get_logger().warning("once")
    logging.getLogger("some.lib").warning("stdlib_once")
    assert first.getvalue() == ""
    assert [e["event"] for e in lines(second)] == ["once", "stdlib_once"]


# -- import cost -------------------------------------------------------------------------------


def test_import_does_not_pull_in_structlog() -> None:
    code = (
        "import sys, manifesto.cli.logging as m; "
        "print(sorted(k for k in ('structlog', 'httpx', 'typing', 'threading') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "structlog" not in out and "httpx" not in out


def test_lazy_configure_loads_structlog_only_for_an_emitted_event():
    """The CLI's default: nothing logged, structlog never imported; a warning still comes out."""
    import subprocess
    import sys

    code = r"""
import io, sys
from manifesto.cli.logging import configure
from manifesto.log import get_logger
out = io.StringIO()
configure(stream=out, json=True, lazy=True)
log = get_logger("manifesto.test")
log.debug("dropped_debug"); log.info("dropped_info")
assert "structlog" not in sys.modules, "structlog loaded for events below the level"
log.warning("kept_warning", password="hunter2-secret")
assert "structlog" in sys.modules
text = out.getvalue()
assert "kept_warning" in text and "dropped" not in text and "hunter2-secret" not in text, text
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_library_use_logs_warnings_only_and_redacted():
    """Without the CLI: no debug chatter, and secrets are redacted even in structlog's defaults."""
    import subprocess
    import sys

    code = r"""
from manifesto.log import get_logger
log = get_logger("manifesto.test")
log.debug("chatty_debug", url="http://r/v2/x/blobs/uploads/1?_state=SECRETSTATE")
log.warning("kept_warning", url="http://r/v2/x/blobs/uploads/1?_state=SECRETSTATE", authorization="Bearer tok-123456")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    both = result.stdout + result.stderr
    assert result.returncode == 0, both
    assert "kept_warning" in both and "chatty_debug" not in both
    assert "SECRETSTATE" not in both and "tok-123456" not in both
