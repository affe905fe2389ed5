"""Secret redaction: one place that knows what a secret looks like and removes it from text.

Registry traffic is full of secrets (Authorization headers, tokens, upload `_state`, signed
redirect URLs), so redaction cannot be left to each call site: every log event passes through
`redact_secrets` (and free text through `scrub`). The
client registers what it sends (`register_secret`), since no pattern can know a password that
turns up in an error message. Library-level: the logger (log.py) and the registry client use it
whether or not the CLI is running.
"""

from __future__ import annotations

import _thread  # not threading: that costs ~2 ms at import and only the lock is needed
import re
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs ~3 ms at CLI start
    from typing import Any

REDACTED = "[REDACTED]"
_URL_REDACTED = "REDACTED"  # inside URLs: keeps the URL free of characters that need quoting
_MIN_SECRET_LEN = 4
_MAX_DEPTH = 12

# Key names (lowercase, "-" read as "_") whose values are always secret.
_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "identity_token",
        "identitytoken",
        "registrytoken",
        "auth",
        "cookie",
        "set_cookie",
        "x_registry_auth",
    }
)
_SENSITIVE_SUFFIXES = ("_token", "_password", "_secret")

# https://user:pass@host -> https://user:REDACTED@host; https://token@host -> https://REDACTED@host.
# Greedy up to the last "@" before the path, so an unescaped "@" in a password cannot leak its tail.
_USERINFO_SRC = r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#'\"<>]+)@"

# Query (or form-body) parameters that carry credentials or signatures.
_QUERY_SECRET_SRC = (
    r"(?i)((?:^|[?&;])(?:_state|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature|x-goog-credential|signature|sig|token|access_token|refresh_token"
    r"|password|client_secret)=)(?!REDACTED)([^&#\s'\"<>]+)"
)

# name: value / name=value / "name": "value" in free text (exception messages, dumped dicts).
_KEY_VALUE_SRC = (
    r"""(?ix)
    (?<![\w.-])
    (["']?)
    (authorization|proxy-authorization|password|passwd|client_secret|secret|access_token
     |refresh_token|identity_token|identitytoken|registrytoken|token|set-cookie|cookie
     |x-registry-auth)
    \1
    (\s*[:=]\s*)
    (?!["']?\[?REDACTED)
    (?!(?:bearer|basic)\s)
    ("[^"]*"|'[^']*'|[^\s&\#"',;}\]]+)
    """
)

# "Bearer <token>" / "Basic <base64>" (RFC 7235 token68), but not challenge parameters
# such as `Bearer realm="..."`, which are useful when debugging auth and hold no secret.
_AUTH_SCHEME_SRC = (
    r"(?i)\b(bearer|basic)(\s+)"
    r"(?!(?:realm|service|scope|error|error_description|error_uri|charset)\s*=)"
    r"(?!\[REDACTED\])"
    r"([A-Za-z0-9\-._~+/]+=*)"
)

_patterns: tuple[re.Pattern[str], ...] = ()
_secrets_lock = _thread.allocate_lock()
_secret_set: set[str] = set()
_secrets: tuple[str, ...] = ()  # longest first, so a secret inside another is not half-replaced


def register_secret(value: str | None) -> None:
    """Remember a secret so any logged string containing it shows [REDACTED] instead.

    Patterns cannot know a password that appears in an error message; the client can,
    so it registers what it sends. Strings shorter than 4 characters are ignored: they
    would blank out ordinary words and are no real secret anyway.
    """
    global _secrets
    if not isinstance(value, str) or len(value) < _MIN_SECRET_LEN:
        return
    from urllib.parse import quote

    forms = {value, quote(value, safe="")}  # passwords travel percent-encoded in URLs and forms
    with _secrets_lock:
        if forms <= _secret_set:
            return
        _secret_set.update(forms)
        _secrets = tuple(sorted(_secret_set, key=len, reverse=True))


def clear_secrets() -> None:
    """Forget every registered secret (tests; long-lived processes switching identity)."""
    global _secrets
    with _secrets_lock:
        _secret_set.clear()
        _secrets = ()


def _userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match[2].partition(":")
    return f"{match[1]}{user}:{_URL_REDACTED}@" if sep else f"{match[1]}{_URL_REDACTED}@"


def _key_value(match: re.Match[str]) -> str:
    value = match[4]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match[1]}{match[2]}{match[1]}{match[3]}{quote}{REDACTED}{quote}"


def scrub(text: str) -> str:
    """Remove secrets from one string: registered ones, URL userinfo, signed query
    parameters, `name=value` secrets and Bearer/Basic credentials."""
    userinfo, query, key_value, auth_scheme = _patterns or _compile()
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "@" in text and "://" in text:
        text = userinfo.sub(_userinfo, text)
    if "=" in text:
        text = query.sub(rf"\1{_URL_REDACTED}", text)
    if "=" in text or ":" in text:
        text = key_value.sub(_key_value, text)
    return auth_scheme.sub(rf"\1\2{REDACTED}", text)


def _compile() -> tuple[re.Pattern[str], ...]:
    """Compile the patterns on first use; doing it at import would cost the CLI ~4 ms."""
    global _patterns
    _patterns = tuple(
        re.compile(src) for src in (_USERINFO_SRC, _QUERY_SECRET_SRC, _KEY_VALUE_SRC, _AUTH_SCHEME_SRC)
    )
    return _patterns


def _is_sensitive_key(key: object) -> bool:
    if isinstance(key, (bytes, bytearray)):
        key = bytes(key).decode("latin-1")
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return name in _SENSITIVE_KEYS or name.endswith(_SENSITIVE_SUFFIXES)


def _redact_value(value: Any) -> Any:
    # None, "" and booleans say whether a secret was there, which helps debugging and leaks nothing.
    return value if value is None or value == "" or isinstance(value, bool) else REDACTED


def _clean_key(key: Any) -> Any:
    if isinstance(key, str):
        return scrub(key)
    if isinstance(key, (bytes, bytearray)):
        return scrub(bytes(key).decode("latin-1"))
    return key if key is None or isinstance(key, (int, float)) else scrub(str(key))


def _clean(value: Any, depth: int = 0) -> Any:
    """A copy of value that is safe to render: secrets gone, only plain JSON-able types."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= _MAX_DEPTH:
        return "[...]"
    if isinstance(value, Mapping):  # dicts, httpx.Headers, other case-insensitive header maps
        return {
            _clean_key(k): _redact_value(v) if _is_sensitive_key(k) else _clean(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        if isinstance(value, tuple) and len(value) == 2 and _is_sensitive_key(value[0]):
            return [_clean_key(value[0]), _redact_value(value[1])]  # a (name, value) header pair
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return scrub(bytes(value).decode("utf-8", "backslashreplace"))
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        import dataclasses  # only reached when one is logged, so it is already imported

        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _clean(fields, depth)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return scrub(str(value))  # URLs, paths, enums: their text, scrubbed


def redact_secrets(logger: Any, method: str, event_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The one redaction processor: every event passes through it before rendering.

    Keys named like secrets lose their values; every other value is walked (mappings,
    sequences, dataclasses) and every string in it scrubbed. Values come out as plain
    JSON types, so no renderer can later repr() an object that still holds a secret.
    """
    cleaned: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key in ("_record", "_from_structlog"):  # ProcessorFormatter bookkeeping
            cleaned[key] = value
        elif _is_sensitive_key(key):
            cleaned[key] = _redact_value(value)
        else:
            cleaned[key] = _clean(value)
    return cleaned
