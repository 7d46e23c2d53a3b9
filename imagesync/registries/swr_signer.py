"""Huawei Cloud AK/SK request signing (SDK-HMAC-SHA256), exactly as huaweicloudsdkcore does it.

Kept apart from the SWR client so the signing can be checked on its own against known vectors.
The canonical form follows `huaweicloudsdkcore.signer.signer.Signer` (3.1.219):

    canonical request = METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
                        signed header names \\n hex(sha256(body))
    string to sign    = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(canonical request))
    signature         = hex(HMAC-SHA256(SK, string to sign))
    Authorization     = "SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<names>, Signature=<hex>"

The canonical URI percent-decodes the path, splits it on "/", re-encodes each segment (only
unreserved characters and "~" stay) and ends with "/"; so a repository sent as `app%2Fweb`
is signed as `app/web`, which is what the SDK does and what the API gateway checks. The query
string is sorted and encoded the same way, and the request must be sent with exactly that query
string (`signed_url` returns it), or the gateway computes a different signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def url_encode(text: str) -> str:
    """Percent-encode all but unreserved characters (RFC 3986): the SDK's `quote(s, safe="~")`."""
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """The path as the gateway canonicalises it: decoded, re-encoded per segment, trailing '/'."""
    encoded = "/".join(url_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def canonical_query(params: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> str:
    """Sorted `key=value` pairs, both encoded; list values become one pair per sorted item."""
    if not params:
        return ""
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, list | tuple):
            pairs.extend((str(key), _query_value(v)) for v in value)
        else:
            pairs.append((str(key), _query_value(value)))
    pairs.sort()
    return "&".join(f"{url_encode(k)}={url_encode(v)}" for k, v in pairs)


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], body: bytes = b""
) -> tuple[str, list[str]]:
    """Return the canonical request text and the sorted, lower-cased signed header names."""
    normalized = {name.lower(): str(value).strip() for name, value in headers.items()}
    signed = sorted(name for name in normalized if "_" not in name)
    canonical_headers = "".join(f"{name}:{normalized[name]}\n" for name in signed)
    body_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256
    uri = canonical_uri(path)
    text = "\n".join([method.upper(), uri, query, canonical_headers, ";".join(signed), body_hash])
    return text, signed


def string_to_sign(canonical: str, sdk_date: str) -> str:
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def signature(secret_key: str, text: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


class AkSkSigner:
    """Signs requests with one AK/SK pair for one project (BasicCredentials in SDK terms).

    The secret key and the security token are held privately and never appear in repr()."""

    def __init__(self, access_key: str, secret_key: str, project_id: str, security_token: str = ""):
        self.access_key = access_key
        self._secret_key = secret_key
        self.project_id = project_id
        self._security_token = security_token

    def __repr__(self) -> str:
        return (
            f"AkSkSigner(access_key={self.access_key!r}, project_id={self.project_id!r}, "
            "secret=***)"
        )

    def sign(
        self,
        method: str,
        url: str,
        params: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None,
        body: bytes = b"",
        when: datetime | None = None,
    ) -> tuple[str, dict[str, str]]:
        """Return (URL with the canonical query string, headers to send).

        `url` is the full URL without a query; path parameters must already be percent-encoded
        (a '/' inside a repository name as %2F). The headers include Host, X-Sdk-Date,
        X-Project-Id, Content-Type, X-Security-Token (temporary credentials) and Authorization.
        """
        when = when or datetime.now(UTC)
        parts = urlsplit(url)
        headers = {
            "Content-Type": "application/json",
            "Host": parts.netloc,
            "X-Sdk-Date": when.strftime(DATE_FORMAT),
        }
        if self.project_id:
            headers["X-Project-Id"] = self.project_id
        if self._security_token:
            headers["X-Security-Token"] = self._security_token
        query = canonical_query(params)
        canonical, signed = canonical_request(method, parts.path or "/", query, headers, body)
        digest = signature(self._secret_key, string_to_sign(canonical, headers["X-Sdk-Date"]))
        headers["Authorization"] = (
            f"{ALGORITHM} Access={self.access_key}, SignedHeaders={';'.join(signed)}, "
            f"Signature={digest}"
        )
        return (f"{url}?{query}" if query else url), headers
