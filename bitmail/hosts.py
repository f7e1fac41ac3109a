"""Which web or SMTP hosts are this machine only.

On loopback nobody else can listen in, so plain HTTP and SMTP AUTH without
TLS are allowed there (and only there) without asking.
"""

from __future__ import annotations

import ipaddress

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """`localhost`, or an address in 127.0.0.0/8 or ::1."""
    if host.lower() in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
