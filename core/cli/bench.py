"""``bench``: the accept path against a bare Litestar endpoint, and the plugin platform.

Only this command imports ``arrears_router.bench``, when it runs.
"""

from __future__ import annotations

import argparse

from arrears_router.cli.common import Commands

__all__ = ["add_commands"]


# Calls in flight per no-op plugin. A plugin's deliveries go at most this many per claim,
# call and record round trip (two group commits, synced while payments share them), so a
# low figure measures that cap, not the platform: at full accept load on 2 cores, 64 left
# the plugins ~0.1 s behind each turn (accept -> done p50 ~165 ms) and 8 ~0.4 s; from 128 up
# they keep up (p50 ~25 ms) and nothing changes further.
PLUGIN_CONCURRENCY = 256
# Each built-in's calls in flight: against a sink that answers at once, enough to keep the
# engine busy; each HTTP plugin keeps up to this many connections open.
BUILTIN_CONCURRENCY = 32


def add_commands(commands: Commands) -> None:
    parser = commands.add("bench", "measure the accept path against a bare Litestar endpoint",
                          cmd_bench)
    parser.add_argument("--requests", type=int, default=20_000,
                        help="measured requests per server (default: 20000)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="connections, each with one request in flight (default: 32)")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="requests sent first and not measured (default: 1000)")
    parser.add_argument("--prefill", type=int, default=0,
                        help="events put in the store before timing, each with a done delivery"
                             " to each plugin (default: 0)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="measured requests are sent in this many rounds, the servers"
                             " taking turns, so a passing load on the machine hits both alike"
                             " (default: 5)")
    parser.add_argument("--random-ids", action="store_true",
                        help="scatter transaction ids over the whole key space (the worst case"
                             " for the store's index) instead of in time order, as WeChat's are")
    parser.add_argument("--plugins", type=int, default=3,
                        help="no-op plugins enabled on the router while it accepts"
                             " (default: 3; 0 for the accept path alone)")
    parser.add_argument("--plugin-concurrency", type=int, default=PLUGIN_CONCURRENCY,
                        help="each no-op plugin's concurrency, its calls in flight"
                             f" (default: {PLUGIN_CONCURRENCY})")
    parser.add_argument("--attack-rate", type=float, default=50.0,
                        help="then measure valid notifications beside this many field floods"
                             " a second, the costliest unsigned request (default: 50; 0"
                             " skips it)")
    parser.add_argument("--drain", type=int,
                        help="then time the drain of a backlog of this many deliveries to a"
                             " no-op plugin once enabled (default: 100000; 0 skips it); with"
                             " --builtins, of this many payments through every plugin"
                             " (default: 20000)")
    parser.add_argument("--store", metavar="URL",
                        help="also measure every figure on this PostgreSQL database"
                             " (postgresql://USER@HOST:PORT/DB), beside the SQLite store: each"
                             " router gets a schema of its own, dropped after the run; the"
                             " database's tables are never touched")
    parser.add_argument("--routers", type=int, default=1,
                        help="with N > 1, also N serve processes sharing each store, the"
                             " connections spread evenly over them, as rows of their own"
                             " (default: 1)")
    real = parser.add_argument_group(
        "real work", "--builtins: the four built-ins against local sink servers, beside the"
        " no-op plugins of the same run")
    real.add_argument("--builtins", action="store_true",
                      help="add a router with unlock, webhook, sms and ledger to the accept"
                           " phase; time each plugin's backlog alone; drain --drain payments"
                           " through the no-op plugins, the built-ins in the engine and in a"
                           " worker process, with lone callbacks before and during each drain")
    real.add_argument("--builtin-concurrency", type=int, default=BUILTIN_CONCURRENCY,
                      help=f"each built-in's concurrency (default: {BUILTIN_CONCURRENCY})")
    real.add_argument("--plugin-drain", type=int, default=2000,
                      help="payments in each one-plugin backlog (default: 2000; 0 skips them)")
    real.add_argument("--lone-rate", type=float, default=20.0,
                      help="lone callbacks a second, over 4 connections (default: 20)")
    real.add_argument("--lone-idle", type=int, default=200,
                      help="lone callbacks timed before each drain (default: 200)")
    parser.add_argument("--reconcile", type=int, nargs="?", const=10_000, metavar="N",
                        help="instead, time `reconcile` of an N-line bill against a store of"
                             " N payments (default N: 10000)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.reconcile is not None:
        from arrears_router.bench.reconcile import run_reconcile_bench

        run_reconcile_bench(args.reconcile, json=args.json)
        return
    from arrears_router.bench import run_bench

    run_bench(args)
