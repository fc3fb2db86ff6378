"""Who may talk to the web interface: loopback names, the Host allow-list, same origin.

The ``Host`` allow-list defeats DNS rebinding (a page on another site resolving its own
name to 127.0.0.1); the same-origin check, with the CSRF token, guards the configuration
POST. ``SECURITY_HEADERS`` go on every response.
"""

from __future__ import annotations

from collections.abc import Mapping

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def allowed_hosts_for(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """Loopback names, the bound address (unless a wildcard) and the user's extra names."""
    hosts = set(LOOPBACK_HOSTS)
    if bind_host not in ("", "0.0.0.0", "::"):
        hosts.add(bind_host.strip("[]").lower())
    hosts.update(h.strip().lower() for h in extra if h.strip())
    return hosts


def host_allowed(host_header: str | None, allowed_hosts: frozenset[str]) -> bool:
    """Is the request's ``Host`` (port and IPv6 brackets removed) one of ``allowed_hosts``?"""
    host = (host_header or "").strip().lower()
    if not host:
        return False
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in allowed_hosts


def same_origin(headers: Mapping[str, str]) -> bool:
    """Does ``Origin`` (or, without it, ``Referer``) name this very ``Host``?"""
    expected = f"http://{headers.get('Host', '')}".lower()
    origin = headers.get("Origin")
    if origin is not None:
        return origin.lower() == expected
    referer = headers.get("Referer")
    if referer:
        return referer.lower() == expected or referer.lower().startswith(expected + "/")
    return False


def not_cross_origin(headers: Mapping[str, str]) -> bool:
    """Same origin, or neither ``Origin`` nor ``Referer`` (a script, not a browser: every
    browser sends ``Origin`` with a cross-site POST). For the sign-in form, which a script
    may post too and which changes nothing before the password is right."""
    if headers.get("Origin") is None and not headers.get("Referer"):
        return True
    return same_origin(headers)
