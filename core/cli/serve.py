"""``serve``, ``worker`` and ``check-config``: running the router, and checking what it runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from arrears_router.cli.common import Commands, load
from arrears_router.config import Config, ConfigError, check_demo_keys, config_path, demo_keys_in
from arrears_router.logs import configure_logging, secrets_in
from arrears_router.metrics import MetricsDirError, clear_dead, metrics_dir, use_metrics_dir
from arrears_router.platform.registry import Registry, RegistryError
from arrears_router.serve import run_loop
from arrears_router.store import shown_store_url

__all__ = ["add_commands"]

log = logging.getLogger("arrears_router.cli")
DEMO_WARNING = ("{keys}: the PUBLIC DEMO KEYS: anyone who can reach this router can forge"
                " payments with them. For a demo on this machine only; never in production.")


def add_commands(commands: Commands) -> None:
    serve = commands.add("serve", "run the router", cmd_serve)
    serve.add_argument("--host", help="listen address (default: [server] host)")
    serve.add_argument("--port", type=int, help="listen port, 0 for any free one")
    serve.add_argument("--no-dispatch", action="store_true",
                       help="only accept; separate `worker` processes deliver")
    commands.add("worker", "deliver payments to plugins, without the HTTP side", cmd_worker)
    commands.add("check-config", "validate the config and summarise it", cmd_check_config)
    admin = commands.add("admin", "run the admin listener alone (serve runs one itself)",
                         cmd_admin)
    admin.add_argument("--host", help="listen address (default: [admin] host)")
    admin.add_argument("--port", type=int, help="listen port, 0 for any free one")


def _registry(args: argparse.Namespace, config: Config) -> Registry:
    """The configured plugins, loaded; refused here, with the key named, before any start."""
    try:
        return Registry.load(config.plugins)
    except RegistryError as exc:
        raise SystemExit(f"config error: {config_path(args.config)}: {exc}") from None


def _log_as(config: Config) -> None:
    """``[log]``, before the plugins load: from here on every line is as configured."""
    configure_logging(config.log.format, config.log.level, secrets_in(config))


def _count_metrics(args: argparse.Namespace, config: Config) -> None:
    """With an admin listener, every process of the host counts into one folder for its
    /metrics: set before any child process starts (they inherit it), rid of exited ones."""
    if not config.admin.enabled:
        return
    directory = metrics_dir(config.store.url, config.admin.metrics_dir)
    try:
        use_metrics_dir(directory)
    except MetricsDirError as exc:
        raise SystemExit(f"config error: {config_path(args.config)}: admin.metrics_dir:"
                         f" {exc}") from None
    clear_dead(directory)


def cmd_serve(args: argparse.Namespace) -> None:
    from arrears_router.serve import module_command
    from arrears_router.serve.app import create_app
    from arrears_router.serve.engine_parent import EngineProcess
    from arrears_router.serve.server import serve

    config = load(args)
    _log_as(config)
    _count_metrics(args, config)
    _registry(args, config)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    try:  # `--host` may open to the network what the config kept on loopback
        check_demo_keys(config, host)
    except ConfigError as exc:
        raise SystemExit(f"config error: {config_path(args.config)}: {exc}") from None
    if demo := demo_keys_in(config):
        log.warning(DEMO_WARNING.format(keys=", ".join(demo)))
    config_file = str(config_path(args.config).resolve())
    engine = EngineProcess(module_command(
        "arrears_router.serve.engine_child", "--config", config_file,
        *(["--no-dispatch"] if args.no_dispatch else []),
    ))
    beside = []
    if config.admin.enabled:
        from arrears_router.admin.process import announcement, listen
        from arrears_router.serve.admin_parent import AdminProcess

        sock = listen(config)
        beside.append(AdminProcess(module_command(
            "arrears_router.admin.process", "--config", config_file), sock, announcement(sock),
        ).running())
    try:
        serve(create_app(engine, config.server, beside), host, port)
    except OSError as exc:  # the address, before anything started
        raise SystemExit(f"serve: cannot listen on {host}:{port}: {exc.strerror}") from None


def cmd_worker(args: argparse.Namespace) -> None:
    from arrears_router.platform.runtime import Router

    config = load(args)
    _log_as(config)
    _count_metrics(args, config)
    try:
        router = Router(config, config_file=config_path(args.config), dispatch=True)
    except RegistryError as exc:
        raise SystemExit(f"config error: {config_path(args.config)}: {exc}") from None

    async def work() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        async with router.running():
            print("arrears-router worker running", flush=True)
            await stopping.wait()

    run_loop(work())


def cmd_admin(args: argparse.Namespace) -> None:
    from arrears_router.admin.process import listen, run_admin

    config = load(args)
    _log_as(config)
    if not config.admin.enabled:
        raise SystemExit(f"admin: {config_path(args.config)} has no [[admin.tokens]]: the admin"
                         " listener is off without one")
    sock = listen(config, args.host, args.port)
    run_loop(run_admin(config, config_path(args.config).resolve(), sock))


def cmd_check_config(args: argparse.Namespace) -> None:
    config = load(args)
    registry = _registry(args, config)
    print(f"{config_path(args.config)}: ok")
    print(f"  listens on {config.server.host}:{config.server.port}{config.server.callback_path}"
          f" (bodies up to {config.server.max_body_bytes} bytes)")
    print(f"  store {shown_store_url(config.store.url)}")
    for merchant in config.merchants:
        rotation = f", {len(merchant.previous_keys)} previous key set(s)" * bool(
            merchant.previous_keys
        )
        print(f"  merchant appid={merchant.appid} mch_id={merchant.mch_id}"
              f" sign_types={','.join(merchant.sign_types)}{rotation}")
    if demo := demo_keys_in(config):
        print("  warning: " + DEMO_WARNING.format(keys=", ".join(demo)))
    admin = config.admin
    print(f"  admin on {admin.host}:{admin.port}: " + ", ".join(
        f"{token.name} ({token.scope})" for token in admin.tokens)
        if admin.enabled else "  admin off (no [[admin.tokens]])")
    for plugin in registry.plugins.values():
        after = f" after {','.join(plugin.policy.after)}" * bool(plugin.policy.after)
        print(f"  plugin {plugin.name} ({plugin.policy.mode}{after})")
