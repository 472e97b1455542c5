"""Which hosts are this machine's own: where the console may listen, and be asked for,
without a token. No web framework is imported here: the CLI checks `--host` with it
before starting one."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` is an address only this machine reaches (127.0.0.0/8, ::1,
    localhost), with or without the brackets of an IPv6 URL."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
