"""Starting the daemon's web interface: who may use it, and what it says when it starts.

Kept out of ``daemon.py`` (which only wires the parts together): the rule that a page
reachable from the network needs a password (``--host`` not loopback: the environment's
``AUDIO_ANALYSIS_WEB_PASSWORD`` or a hash stored by ``daemon.py --set_password``, unless
``--no_auth``), the first-start import of the original's ``dh_config.json``, and the
start-up announcement.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from audio.errors import UsageError

logger = logging.getLogger("daemon")


class WebStartError(UsageError):
    """A reason the web interface cannot start as asked (one line, exit 2)."""


def _fail(message: str) -> int:
    print(f"daemon.py: error: {message}", file=sys.stderr)
    return 2


def announce(args: argparse.Namespace, address: Any, config_path: Path) -> None:
    from web.security import is_loopback

    if args.no_auth and not is_loopback(args.host):
        logger.warning("listening on %s with --no_auth: the page is reachable from the "
                       "network without a password; anyone who can reach it can change "
                       "the DeviceHive settings", args.host)
    elif not is_loopback(args.host):
        logger.warning("listening on %s: the page is reachable from the network; it asks "
                       "for the password", args.host)
    host, port = address[:2]
    print(f"daemon.py: web interface on http://{host}:{port}/ (config {config_path})",
          file=sys.stderr, flush=True)


def config_path(args: argparse.Namespace) -> Path:
    from web.config import default_config_path

    return Path(args.config).expanduser() if args.config else default_config_path()


def web_auth(args: argparse.Namespace) -> Any:
    """Import the original's dh_config.json on a first start; then what the web page
    checks: None on loopback (or with --no_auth), else the password (env or stored hash);
    a non-loopback --host without either is a ``WebStartError``."""
    from vggish.environment import WEB_PASSWORD_ENV, env_value
    from web.auth import Auth, Password
    from web.config import ConfigError, import_legacy_config, load_config
    from web.security import is_loopback

    path = config_path(args)
    legacy = Path(args.legacy_config).expanduser() if args.legacy_config else None
    try:
        import_legacy_config(path, legacy)
        stored = load_config(path)
    except ConfigError as error:
        raise WebStartError(str(error)) from None
    if is_loopback(args.host) or args.no_auth:
        return None
    plain = env_value(WEB_PASSWORD_ENV)
    if plain is None and not stored.web_password_hash:
        raise WebStartError(f"--host {args.host} makes the page reachable from the network: "
                         f"set its password first (daemon.py --set_password, or env "
                         f"{WEB_PASSWORD_ENV}), or give --no_auth")
    return Auth(Password(plain=plain, hashed=None if plain else stored.web_password_hash))


def set_password(args: argparse.Namespace) -> int:
    """--set_password: prompt twice on a terminal, else read one line from stdin."""
    import getpass
    from dataclasses import replace

    from web.auth import PasswordError, check_new_password, hash_password
    from web.config import ConfigError, load_config, save_config

    path = config_path(args)
    try:
        if sys.stdin.isatty():
            password = getpass.getpass("Web page password: ")
            if getpass.getpass("Again: ") != password:
                return _fail("the two passwords differ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        check_new_password(password)
        config = load_config(path)
        save_config(path, replace(config, web_password_hash=hash_password(password)))
    except (PasswordError, ConfigError) as error:
        return _fail(str(error))
    print(f"daemon.py: web page password saved in {path}", file=sys.stderr)
    return 0
