"""Starting the daemon's web interface: who may use it, what it configures, and what it
says when it starts.

Kept out of ``daemon.py`` (which only wires the parts together): the rule that a page
reachable from the network needs a password (``--host`` not loopback: the environment's
``AUDIO_ANALYSIS_WEB_PASSWORD`` or a hash stored by ``daemon.py --set_password``, unless
``--no_auth``), the first-start import of the original's ``dh_config.json``, the
configuration of this run and the sinks built from it (``configure``: the file, then the
environment's secrets, then the flags; DeviceHive, MQTT and webhooks alike), and the
start-up announcement.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio.errors import UsageError

logger = logging.getLogger("daemon")


class WebStartError(UsageError):
    """A reason the web interface cannot start as asked (one line, exit 2)."""


MQTT_FIELDS = ("mqtt_url", "mqtt_password", "mqtt_ca", "mqtt_prefix", "mqtt_device_id",
               "ha_discovery", "ha_discovery_prefix", "mqtt_predictions")


@dataclass
class Configured:
    """What ``configure`` found: the file, this run's configuration, the sinks."""

    path: Path
    config: Any  # web.config.DaemonConfig: the file, the environment, the flags
    stored: Any  # what the file holds
    from_env: frozenset[str]  # fields whose value came from the environment
    devicehive: Any  # audio.sinks.devicehive.DeviceHiveSink
    home: Any  # audio.sinks.factory.HomeSinks
    home_errors: dict[str, str] = field(default_factory=dict)

    def web_options(self) -> dict[str, Any]:
        """``WebApp``'s keyword arguments for the configuration and the home sinks."""
        return {"config": self.config, "config_path": self.path, "stored": self.stored,
                "from_env": self.from_env, "home": self.home,
                "home_errors": self.home_errors}


def configure(args: argparse.Namespace, db: Any) -> Configured:
    """This run's configuration (the file < the environment's secrets < the flags) and the
    DeviceHive, MQTT and webhook sinks. The flags of this run being wrong is a
    ``WebStartError`` (exit 2); a saved setting that cannot work leaves its sink off, with
    the reason in the status, so that the page can correct it."""
    from audio.sinks.devicehive import DeviceHiveConfigError, DeviceHiveSink
    from web.config import ConfigError, environment_tokens, load_config
    from web.home import environment_secrets, flag_overrides

    path = config_path(args)
    try:
        stored = load_config(path)
    except ConfigError as error:
        raise WebStartError(str(error)) from None
    flags = {"server_url": args.dh_url, "refresh_token": args.dh_refresh_token,
             "access_token": args.dh_access_token, "device_id": args.dh_device_id,
             "login": args.dh_login, "password": args.dh_password,
             "notification_name": args.dh_notification,
             "legacy_format": True if args.dh_legacy_format else None,
             **flag_overrides(args)}
    environment = {**environment_tokens(), **environment_secrets()}
    from_env = frozenset(k for k, v in environment.items() if v and flags.get(k) is None)
    config = stored.merged(environment).merged(flags)
    given = {k for k, v in flags.items() if v not in (None, "", ())}
    try:
        dh_settings = config.devicehive_settings()
        dh_error = None
    except DeviceHiveConfigError as error:
        # DeviceHive's flags or tokens from the environment: this run's input is wrong
        if (given | {k for k, v in environment_tokens().items() if v}) \
                - {"legacy_format", *MQTT_FIELDS, "webhook_urls", "webhook_secret"}:
            raise WebStartError(str(error)) from None  # the flags of this run are wrong
        dh_settings, dh_error = None, f"saved configuration unusable: {error}"
    sink = DeviceHiveSink(dh_settings, queue_size=args.dh_queue_size, store=db)
    if dh_error:
        sink.report_error(dh_error)
    try:
        home, errors = _home_sinks(args, db, config, given)
    except WebStartError:
        sink.close(timeout=0)
        raise
    return Configured(path, config, stored, from_env, sink, home, errors)


def _home_sinks(args: argparse.Namespace, db: Any, config: Any, given: set[str]
                ) -> tuple[Any, dict[str, str]]:
    """The MQTT and webhook sinks of ``config`` (``audio.sinks.factory``), and why a saved
    setting was left off."""
    from audio.sinks.factory import build_home_sinks
    from web.home import mqtt_of, webhooks_of

    errors: dict[str, str] = {}
    settings = []
    for name, build, flags in (("mqtt", mqtt_of, set(MQTT_FIELDS)),
                               ("webhooks", webhooks_of, {"webhook_urls", "webhook_secret"})):
        try:
            settings.append(build(config))
        except UsageError as error:
            if given & flags:
                raise WebStartError(str(error)) from None
            errors[name] = f"saved configuration unusable: {error}"
            logger.warning("%s: %s", name, errors[name])
            settings.append(None)
    try:
        return build_home_sinks(args, db, settings=(settings[0], settings[1])), errors
    except UsageError as error:
        raise WebStartError(str(error)) from None


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
