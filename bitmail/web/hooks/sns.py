"""Amazon SNS, as the SES webhook meets it: which fields a message signs, the
signature check, the URLs SNS may name, and the client that fetches signing
certificates (cached) and confirms subscriptions — the only I/O of the SES
hook. (SNS's "Verifying the signatures of Amazon SNS messages".)
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from yarl import URL

from .base import BadSignature, Unavailable

log = logging.getLogger(__name__)

# The fields each message type signs, in the documented order. A Notification
# signs Subject only when it has one.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}
SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}

CERT_MAX_BYTES = 64 * 1024
# Where SNS keeps its certificates and takes confirmations: its own endpoints
# (sns.<region>.amazonaws.com, .com.cn in China), nowhere else.
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
CERT_PATH = re.compile(r"^/[A-Za-z0-9_.-]+\.pem$")


# -- URLs and signatures ------------------------------------------------------


def _sns_url(value: str, field: str) -> URL:
    """An https URL on an SNS endpoint host, nothing else (no port, no user)."""
    try:
        url = URL(value)
    except (ValueError, TypeError):
        raise BadSignature("is not a URL", field=field, code="bad_url") from None
    if (url.scheme != "https" or not SNS_HOST.fullmatch(url.raw_host or "")
            or url.user is not None or url.password is not None
            or url.explicit_port not in (None, 443) or url.fragment):
        raise BadSignature("must be an https://sns.<region>.amazonaws.com/ URL", field=field,
                           code="bad_url")
    return url


def check_certificate_url(value: str) -> URL:
    """SigningCertURL: an SNS host, a plain path to a .pem, no query."""
    url = _sns_url(value, "SigningCertURL")
    if url.query_string or not CERT_PATH.fullmatch(url.raw_path):
        raise BadSignature("must name a .pem file on the SNS host", field="SigningCertURL",
                           code="bad_url")
    return url


def check_subscribe_url(value: str, topic: str) -> URL:
    """SubscribeURL: an SNS host, Action=ConfirmSubscription for this very topic."""
    url = _sns_url(value, "SubscribeURL")
    if (url.path not in ("", "/") or url.query.get("Action") != "ConfirmSubscription"
            or url.query.get("TopicArn") != topic):
        raise BadSignature("must confirm a subscription to this topic on the SNS host",
                           field="SubscribeURL", code="bad_url")
    return url


def canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signs: "Name\\nValue\\n" for each signed field, in order."""
    out = []
    for name in SIGNED_FIELDS[message["Type"]]:
        value = message.get(name)
        if value is None:
            continue  # only Subject may be absent (required fields were checked)
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def verify_signature(message: dict[str, Any], key: rsa.RSAPublicKey) -> None:
    """BadSignature unless `key` signed the canonical form of `message`."""
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("is not base64", field="Signature") from None
    algorithm = SIGNATURE_HASHES[message["SignatureVersion"]]()
    try:
        key.verify(signature, canonical(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise BadSignature("the SNS signature does not match the message",
                           field="Signature") from None


# -- the only I/O: certificates and confirmations ---------------------------------


class FetchError(Exception):
    """An SNS URL answered with something other than 200."""

    def __init__(self, url: str, status: int):
        super().__init__(f"{url} answered {status}")
        self.status = status


Fetch = Callable[[str], Awaitable[bytes]]


class SnsClient:
    """Fetches SNS signing certificates (cached by URL) and confirms subscriptions.

    `fetch(url) -> bytes` is the one I/O function: raise FetchError for an HTTP
    answer that is not 200, anything else (aiohttp.ClientError, TimeoutError,
    OSError) when the endpoint cannot be reached. The default uses aiohttp.
    """

    def __init__(self, fetch: Fetch | None = None, *, cache_size: int = 32,
                 timeout: float = 10.0):
        self.fetch: Fetch = fetch or self._get
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._cache_size = cache_size
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        """The RSA key of the certificate at `url` (already validated)."""
        cert = self._cache.get(url)
        if cert is None:
            cert = await self._load(url)
            self._cache[url] = cert
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(url)
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            self._cache.pop(url, None)
            raise BadSignature("the SNS signing certificate is not valid now",
                               field="SigningCertURL")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise BadSignature("the SNS signing certificate has no RSA key",
                               field="SigningCertURL")
        return key

    async def _load(self, url: str) -> x509.Certificate:
        try:
            pem = await self.fetch(url)
        except FetchError as exc:
            raise BadSignature(f"the signing certificate could not be fetched ({exc.status})",
                               field="SigningCertURL") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("cannot fetch the SNS certificate %s: %s", url, exc)
            raise Unavailable("the SNS signing certificate cannot be fetched now; try again",
                              field="SigningCertURL") from None
        if len(pem) > CERT_MAX_BYTES:
            raise BadSignature("the signing certificate is too large", field="SigningCertURL")
        try:
            return x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise BadSignature("the signing certificate cannot be read",
                               field="SigningCertURL") from None

    async def confirm(self, url: str) -> None:
        """Confirm a subscription (a GET on its validated SubscribeURL)."""
        await self.fetch(url)

    async def _get(self, url: str) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout))
        async with self._session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise FetchError(url, resp.status)
            # Reading stops past the limit; one byte over is enough to refuse it.
            data = bytearray()
            async for chunk in resp.content.iter_chunked(16 * 1024):
                data += chunk
                if len(data) > CERT_MAX_BYTES:
                    break
            return bytes(data[:CERT_MAX_BYTES + 1])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


SNS_CLIENT = web.AppKey("sns_client", SnsClient)
