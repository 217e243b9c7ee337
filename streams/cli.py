"""``salepulse``: the command line of every salepulse process and tool.

Each subcommand imports its module only when it runs, so ``salepulse kafka status`` does not pay for Faust, River
or chdb start-up.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Any

from salepulse.streams.config import Settings
from salepulse.streams.logs import configure


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=str, sort_keys=False))


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.deploy.kafka.local_broker import LocalBroker, LocalBrokerError

    broker = LocalBroker(home=settings.state_dir / "kafka", port=settings.local_kafka_port,
                         controller_port=settings.local_kafka_port + 1)
    try:
        if args.action == "up":
            print(f"local Kafka answering at {broker.up()} (data in {broker.home})")
        elif args.action == "down":
            broker.down()
            print("local Kafka stopped")
        else:
            _print_json(broker.status())
    except LocalBrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.schemas.check import check_all

    report = check_all(settings.schema_registry_url)
    for line in report.lines:
        print(line)
    return 0 if report.ok else 1


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.streams.topics import ensure_topics

    ensure_topics(settings)
    from salepulse.streams.app import app

    sys.argv = ["salepulse", "worker", "--loglevel", args.loglevel, "--web-port", str(settings.http_port),
                "--web-host", settings.http_host]
    app.main()
    return 0


def _run_until_signal(run: Any) -> None:
    """Run ``run(stop_event)`` in the foreground; SIGINT/SIGTERM set the event for a clean finish."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run(stop)


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.clickhouse_sink import ClickHouseSink
    from salepulse.streams.topics import ensure_topics

    ensure_topics(settings)
    sink = ClickHouseSink(settings)
    sink.serve_metrics(settings.http_host, settings.sink_metrics_port)
    _run_until_signal(sink.run)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.clickhouse import connect, migrate

    applied = migrate(connect(settings.clickhouse_dsn))
    print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.simulate import run_simulation
    from salepulse.streams.topics import ensure_topics

    ensure_topics(settings)
    report = run_simulation(settings, seed=args.seed, rate=args.rate, duration=args.duration,
                            max_events=args.max_events, bad_rate=args.bad_rate)
    _print_json(report.__dict__)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.replay import parse_speed, run_replay
    from salepulse.streams.topics import ensure_topics

    ensure_topics(settings)
    speed = parse_speed(args.speed)
    report = run_replay(settings, args.dataset, args.path, speed=speed, limit=args.limit)
    _print_json(report.__dict__)
    return 0


def cmd_priors(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.priors import PriorsFileError, load_priors
    from salepulse.streams.topics import ensure_topics

    try:
        ensure_topics(settings)
        loaded = load_priors(settings, args.file)
    except (PriorsFileError, OSError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    print(f"loaded {loaded} expert forecasts into {settings.topics.priors}")
    return 0


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.alerts_follow import follow
    from salepulse.streams.topics import ensure_topics

    ensure_topics(settings)
    # A webhook is a delivery channel: its first run must not skip alerts raised before it started.
    from_beginning = args.from_beginning or args.webhook is not None
    report = follow(settings, output="json" if args.json else "text", webhook=args.webhook,
                    group_id=args.group, from_beginning=from_beginning)
    print(json.dumps(report.__dict__, default=str), file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.streams.demo import run_demo

    return run_demo(settings, duration=args.duration, rate=args.rate, seed=args.seed, bad_rate=args.bad_rate)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    path = args.path
    if path is None and args.dataset != "simulated":
        from salepulse.consumers.data import dataset_path

        path = dataset_path(args.dataset, settings.data_dir)
    if args.what == "forecast":
        from salepulse.consumers.evaluate_forecast import print_table, run

        score_from = date.fromisoformat(args.score_from) if args.score_from else None
        result = run(args.dataset, path, args.json, score_from=score_from)
    else:
        from salepulse.consumers.evaluate_recommend import print_table, run  # type: ignore[assignment]

        result = run(args.dataset, path, args.json, limit=args.limit, view_rate=args.view_rate)
    print_table(result)
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.streams.bench import run_bench

    return run_bench(settings, output=args.output, quick=args.quick)


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers import deadletters

    if args.action == "tail":
        return deadletters.print_letters(settings, args.n, args.json)
    for row in deadletters.quarantine(settings, args.n):
        _print_json(row)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salepulse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="the local single-node Kafka broker (KRaft, jars through Maven)")
    kafka.add_argument("action", choices=["up", "down", "status"])
    kafka.set_defaults(func=cmd_kafka)

    schemas = sub.add_parser("schemas", help="the Avro contracts")
    schemas.add_argument("action", choices=["check"])
    schemas.set_defaults(func=cmd_schemas)

    worker = sub.add_parser("worker", help="run the Faust worker (agents + HTTP API)")
    worker.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    worker.set_defaults(func=cmd_worker)

    sink = sub.add_parser("sink", help="run the ClickHouse sink")
    sink.set_defaults(func=cmd_sink)

    db = sub.add_parser("db", help="ClickHouse schema")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(func=cmd_db)

    simulate = sub.add_parser("simulate", help="produce a simulated flash-sale world")
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--rate", type=float, default=2000.0, help="events per second")
    simulate.add_argument("--duration", type=float, default=None, help="seconds")
    simulate.add_argument("--max-events", type=int, default=None)
    simulate.add_argument("--bad-rate", type=float, default=0.0, help="share of malformed messages to inject")
    simulate.set_defaults(func=cmd_simulate)

    replay = sub.add_parser("replay", help="replay a real public dataset into Kafka")
    replay.add_argument("dataset", choices=["rees46", "taobao", "online-retail"])
    replay.add_argument("path", nargs="?", type=Path, default=None, help="file (default: under SALEPULSE_DATA_DIR)")
    replay.add_argument("--speed", default="max", help="time scale of original gaps, or 'max'")
    replay.add_argument("--limit", type=int, default=None, help="first N events only")
    replay.set_defaults(func=cmd_replay)

    priors = sub.add_parser("priors", help="buyers' expert forecasts")
    priors_sub = priors.add_subparsers(dest="action", required=True)
    priors_load = priors_sub.add_parser("load", help="load a CSV: sale_id, sku, expected_units[, low, high, author]")
    priors_load.add_argument("file", type=Path)
    priors.set_defaults(func=cmd_priors)

    alerts = sub.add_parser("alerts", help="replenishment alerts for logistics")
    alerts_sub = alerts.add_subparsers(dest="action", required=True)
    alerts_follow = alerts_sub.add_parser("follow", help="print alerts as they come, or POST them to a webhook")
    alerts_follow.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts_follow.add_argument("--webhook", metavar="URL", default=None,
                               help="POST each alert here (retried until accepted; starts from the oldest alert)")
    alerts_follow.add_argument("--group", metavar="NAME", default=None,
                               help="consumer group (default salepulse-alerts-<sink>)")
    alerts_follow.add_argument("--from-beginning", action="store_true", help="a new group starts at the oldest alert")
    alerts_follow.set_defaults(func=cmd_alerts)

    dead = sub.add_parser("deadletters", help="inputs the pipeline refused (dead letters) and rows ClickHouse refused")
    dead.add_argument("action", choices=["tail", "quarantine"],
                      help="tail: the last dead letters (Kafka); quarantine: the last quarantined rows (ClickHouse)")
    dead.add_argument("-n", type=int, default=20, help="how many (per partition for tail)")
    dead.add_argument("--json", action="store_true", help="tail: one JSON object per line")
    dead.set_defaults(func=cmd_deadletters)

    demo = sub.add_parser("demo", help="broker + worker + sink + simulator, then a JSON summary")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of production")
    demo.add_argument("--rate", type=float, default=2000.0, help="events per second")
    demo.add_argument("--seed", type=int, default=None, help="default: a fresh one per run")
    demo.add_argument("--bad-rate", type=float, default=0.002)
    demo.set_defaults(func=cmd_demo)

    evaluate = sub.add_parser("evaluate", help="offline evaluation on real data")
    evaluate.add_argument("what", choices=["forecast", "recommend"])
    evaluate.add_argument("--dataset", required=True)
    evaluate.add_argument("--path", type=Path, default=None)
    evaluate.add_argument("--json", type=Path, default=None)
    evaluate.add_argument("--score-from", default=None, help="YYYY-MM-DD (forecast only)")
    evaluate.add_argument("--limit", type=int, default=None, help="first N events only (recommend only)")
    evaluate.add_argument("--view-rate", type=float, default=None,
                          help="share of novel views scored for discover (recommend only; default per dataset)")
    evaluate.set_defaults(func=cmd_evaluate)

    bench = sub.add_parser("bench", help="run the benchmarks and write BENCHMARKS.md")
    bench.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    bench.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
