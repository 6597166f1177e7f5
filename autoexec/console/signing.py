"""The console's HMAC request signature.

The console recomputes ``user#<request URI>#<base64(body)>`` from what arrives on the wire, so the
client must sign *exactly* the bytes and the query string it sends; that is why the query encoder
and the body encoder live here next to the signer instead of being left to ``requests``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Mapping
from urllib.parse import urlencode

AUTH_TYPE = "hmac"


def api_uri(path: str, query: Mapping[str, Any] | None = None) -> str:
    """Path with a leading ``/`` plus ``?query`` for GET calls.

    ``urlencode`` applies ``str()`` to non-string values, which reproduces the original's
    Python-repr encoding of nested objects (``passThroughEnv={'runnerId': 1}``, a quirk of the original); the
    console's fastjson parser accepts it and byte-compatibility keeps console logs comparable.
    """
    uri = path if path.startswith("/") else "/" + path
    if query:
        uri += "?" + urlencode(list(query.items()))
    return uri


def encode_body(payload: Any) -> bytes:
    """JSON body as the original sends it: default separators, non-ASCII kept, UTF-8."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def sign_content(user: str, uri: str, body: bytes | None) -> str:
    b64 = base64.b64encode(body).decode("ascii") if body else ""
    return f"{user}#{uri}#{b64}"


def signature(user: str, token: str, uri: str, body: bytes | None) -> str:
    """Lower-case hex HMAC-SHA256 keyed with the user's API token."""
    content = sign_content(user, uri, body)
    return hmac.new(token.encode("utf-8"), content.encode("utf-8"), hashlib.sha256).hexdigest()


def auth_headers(user: str, token: str, tenant: str, uri: str, body: bytes | None) -> dict[str, str]:
    return {
        "Tenant": tenant,
        "AuthType": AUTH_TYPE,
        "x-access-key": user,
        "Authorization": "Hmac " + signature(user, token, uri, body),
    }


def verify(user: str, token: str, uri: str, body: bytes | None, authorization: str) -> bool:
    """Server-side check (used by the fake console); the console compares case-insensitively."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "hmac" or not given:
        return False
    expected = signature(user, token, uri, body)
    return hmac.compare_digest(expected, given.strip().lower())
