"""Turn a registry's error answer into one clear ManifestoError.

Distribution answers `{"errors":[{"code","message","detail"}]}` (distribution spec, "Error
Codes"), but proxies and load balancers in front of registries answer with plain text, HTML or
nothing; every shape gives a one-line message here.
"""

from __future__ import annotations

import json
import re

from manifesto.errors import AuthError, ManifestoError, NotFound, RegistryError

_NOT_FOUND_CODES = {"BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"}
_TAG = re.compile(r"<[^>]+>")


def parse_body(body: bytes, content_type: str = "") -> tuple[str | None, str]:
    """Return (first error code or None, a one-line human message) from any error body."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None, ""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            code = str(first.get("code") or "") or None
            parts = [str(e.get("message") or e.get("code") or "") for e in errors if isinstance(e, dict)]
            detail = first.get("detail")
            message = "; ".join(p for p in parts if p)
            if isinstance(detail, (str, int)) and str(detail) and len(errors) == 1:
                message = f"{message} ({detail})" if message else str(detail)
            return code, _one_line(message)
        for key in ("message", "error_description", "error", "detail"):
            if isinstance(doc.get(key), str):
                return None, _one_line(doc[key])
    if "html" in content_type.lower() or text.lstrip().lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        text = title.group(1) if title else _TAG.sub(" ", text)
        import html  # only for an HTML error page: most commands never see one

        text = html.unescape(text)
    return None, _one_line(text)


def _one_line(text: str) -> str:
    """Whitespace collapsed and control characters (NUL, terminal escapes) blanked: safe to print."""
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line[:200] + ("…" if len(line) > 200 else "")


def error_for(status: int, body: bytes, content_type: str, what: str) -> ManifestoError:
    """The ManifestoError for a failed request about `what` (e.g. `manifest example.com/a:1`)."""
    code, message = parse_body(body, content_type)
    detail = f": {message}" if message else ""
    if status in (401, 403) or code in ("UNAUTHORIZED", "DENIED"):
        return AuthError(f"{what}: access denied (HTTP {status}{', ' + code if code else ''}){detail}")
    if status == 404 or code in _NOT_FOUND_CODES:
        return NotFound(f"{what}: not found{detail}")
    label = f"HTTP {status}" + (f" {code}" if code else "")
    return RegistryError(f"{what}: registry answered {label}{detail}", status=status, code=code)
