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

from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import configure
from salepulse.streams.tools.preflight import (
    CliError,
    positive_float,
    positive_int,
    require_file,
    require_kafka,
    require_port,
    share,
    speed,
)


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
            print(kafka_down_line(broker))
        else:
            status = broker.status()
            print(kafka_status_line(status))
            _print_json({**status, "owner": broker_owner(status)})
    except LocalBrokerError as exc:
        # The launcher's messages carry a log tail on later lines; the first line says what happened.
        raise CliError(str(exc).splitlines()[0]) from exc
    return 0


def broker_owner(status: dict[str, Any]) -> str:
    """Whose broker answers on the local port: ``ours`` (started by ``kafka up`` in this state folder),
    ``someone else's``, or ``none``.

    >>> broker_owner({"running": True, "answering": True}), broker_owner({"running": False, "answering": True})
    ('ours', "someone else's")
    >>> broker_owner({"running": False, "answering": False}), broker_owner({"running": True, "answering": False})
    ('none', 'ours, not answering')
    """
    if status["running"]:
        return "ours" if status["answering"] else "ours, not answering"
    return "someone else's" if status["answering"] else "none"


def kafka_status_line(status: dict[str, Any]) -> str:
    owner = broker_owner(status)
    where = status["bootstrap"]
    if owner == "ours":
        return f"local Kafka (pid {status['pid']}, data in {status['home']}) answers at {where}"
    if owner == "ours, not answering":
        return f"local Kafka (pid {status['pid']}) is running but does not answer at {where} yet; see {status['log']}"
    if owner == "someone else's":
        return (f"a Kafka broker answers at {where}, but it is not ours (no `salepulse kafka up` broker in "
                f"{status['home']}): salepulse uses it as it is")
    return f"no Kafka broker answers at {where}; start one with `salepulse kafka up`"


def kafka_down_line(broker: Any) -> str:
    """Stop our broker and say so; never claim "stopped" when nothing was stopped."""
    pid = broker.running_pid()
    if broker.down():
        return f"local Kafka stopped (pid {pid})"
    from salepulse.deploy.kafka.local_broker import broker_answers

    if broker_answers(broker.bootstrap, timeout=2.0):
        return (f"nothing stopped: the broker answering at {broker.bootstrap} was not started by `salepulse kafka "
                f"up` in {broker.home}; stop it the way it was started")
    return f"nothing stopped: no local Kafka was running (state in {broker.home})"


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.schemas.check import check_all

    report = check_all(settings.schema_registry_url)
    for line in report.lines:
        print(line)
    return 0 if report.ok else 1


def cmd_data(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.data.datasets import check_lines

    lines, complete = check_lines(settings.data_dir)
    for line in lines:
        print(line)
    return 0 if complete else 1


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.streams.io.topics import ensure_topics

    require_port(settings.http_host, settings.http_port, "SALEPULSE_HTTP_PORT", "the worker's HTTP API")
    require_kafka(settings)
    ensure_topics(settings)
    from salepulse.streams.runtime.worker import build_worker

    app = build_worker(settings).app
    sys.argv = ["salepulse", "worker", "--loglevel", args.loglevel, "--web-port", str(settings.http_port),
                "--web-host", settings.http_host]
    app.main()
    return 0


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    require_port(settings.http_host, settings.collector_port, "SALEPULSE_COLLECTOR_PORT",
                 "the collector (POST /events)")
    require_kafka(settings)
    from salepulse.streams.io.topics import ensure_topics
    from salepulse.streams.runtime.collector_app import run_collectors

    ensure_topics(settings)
    run_collectors(settings)
    return 0


def _run_until_signal(run: Any) -> None:
    """Run ``run(stop_event)`` in the foreground; SIGINT/SIGTERM set the event for a clean finish."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run(stop)


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.io.clickhouse_sink import ClickHouseSink
    from salepulse.streams.io.topics import ensure_topics

    require_port(settings.http_host, settings.sink_metrics_port, "SALEPULSE_SINK_METRICS_PORT", "the sink's metrics")
    require_kafka(settings)
    ensure_topics(settings)
    sink = ClickHouseSink(settings)
    sink.serve_metrics(settings.http_host, settings.sink_metrics_port)
    _run_until_signal(sink.run)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.io.clickhouse import connect, migrate

    applied = migrate(connect(settings.clickhouse_dsn))
    print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.tools.simulate import run_simulation
    from salepulse.streams.io.topics import ensure_topics

    require_kafka(settings)
    ensure_topics(settings)
    report = run_simulation(settings, seed=args.seed, rate=args.rate, duration=args.duration,
                            max_events=args.max_events, bad_rate=args.bad_rate)
    _print_json(report.__dict__)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.tools.replay import get_dataset, parse_speed, run_replay
    from salepulse.streams.io.topics import ensure_topics

    path = args.path if args.path is not None else settings.data_dir / get_dataset(args.dataset).relative_path
    require_file(path, f"the {args.dataset} file", "give its path, set SALEPULSE_DATA_DIR, or see `salepulse data "
                 "check`")
    require_kafka(settings)
    ensure_topics(settings)
    speed = parse_speed(args.speed)
    report = run_replay(settings, args.dataset, args.path, speed=speed, limit=args.limit)
    _print_json(report.__dict__)
    return 0


def cmd_priors(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.tools.priors import PriorsFileError, load_priors
    from salepulse.streams.io.topics import ensure_topics

    require_file(args.file, "the priors file")
    require_kafka(settings)
    try:
        ensure_topics(settings)
        loaded = load_priors(settings, args.file)
    except (PriorsFileError, OSError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    print(f"loaded {loaded} expert forecasts into {settings.topics.priors}")
    return 0


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.io.alerts_follow import follow
    from salepulse.streams.io.topics import ensure_topics

    require_kafka(settings)
    ensure_topics(settings)
    # A webhook is a delivery channel: its first run must not skip alerts raised before it started.
    from_beginning = args.from_beginning or args.webhook is not None
    report = follow(settings, output="json" if args.json else "text", webhook=args.webhook,
                    group_id=args.group, from_beginning=from_beginning)
    print(json.dumps(report.__dict__, default=str), file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.streams.tools.demo import run_demo

    return run_demo(settings, duration=args.duration, rate=args.rate, seed=args.seed, bad_rate=args.bad_rate,
                    keep_serving=args.keep_serving, workers=args.workers, preference_workers=args.preference_workers,
                    collector=args.collector)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    path = args.path
    if args.dataset != "simulated" and (path is None or path.is_dir()):
        from salepulse.consumers.data import dataset_path

        # a folder is read as a data dir, or as the dataset's own folder in one
        folder = path if path is not None else settings.data_dir
        path = dataset_path(args.dataset, folder)
        if not path.is_file() and (folder / path.name).is_file():
            path = folder / path.name
    if path is not None and not (args.dataset == "simulated" and str(path).isdigit()):  # simulated: --path SEED
        require_file(path, f"the {args.dataset} file", "give --path, set SALEPULSE_DATA_DIR, or see `salepulse data "
                     "check`")
    if args.what == "forecast":
        from salepulse.consumers.tools.evaluate_forecast import print_table, run

        score_from = date.fromisoformat(args.score_from) if args.score_from else None
        result = run(args.dataset, path, args.json, score_from=score_from)
    else:
        from salepulse.consumers.tools.evaluate_recommend import print_table, run  # type: ignore[assignment]

        result = run(args.dataset, path, args.json, limit=args.limit, view_rate=args.view_rate)
    print_table(result)
    return 0


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    """The stocking plan of a sale: from a running worker's API, else from ClickHouse's ``plans`` table."""
    import csv
    import urllib.error
    import urllib.parse
    import urllib.request

    from salepulse.streams.domain.buyer_desk import csv_lines, plan_from_rows

    url = f"http://{settings.http_host}:{settings.http_port}/sales/{urllib.parse.quote(args.sale)}/plan"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            plan = json.loads(response.read())
    except urllib.error.HTTPError as error:
        print(json.loads(error.read()).get("error", str(error)), file=sys.stderr)
        return 1
    except OSError:  # no worker running: what the sink wrote
        from salepulse.consumers.io.clickhouse import connect

        result = connect(settings.clickhouse_dsn).query(
            "SELECT * FROM plans FINAL WHERE sale_id = {sale:String} ORDER BY sku", parameters={"sale": args.sale})
        plan = plan_from_rows(args.sale, [dict(zip(result.column_names, row, strict=True))
                                          for row in result.result_rows])
        if not plan["products"]:
            print(f"no plan for sale {args.sale!r} (no worker at {url}, nothing in ClickHouse)", file=sys.stderr)
            return 1
    if args.csv:
        csv.writer(sys.stdout).writerows(csv_lines(plan))
    else:
        _print_json(plan)
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.streams.tools.bench_run import run_bench
    from salepulse.streams.tools.bench_sections import SECTIONS, run_alone

    sections = {"profile"} if args.profile else {s.strip() for s in (args.only or "").split(",") if s.strip()}
    if sections - set(SECTIONS):
        raise SystemExit(f"--only takes {', '.join(SECTIONS)}; not {', '.join(sorted(sections - set(SECTIONS)))}")
    if sections:
        return run_alone(settings, args.output, sections, args.quick)
    return run_bench(settings, output=args.output, quick=args.quick)


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    from salepulse.consumers.tools import deadletters

    if args.action == "tail":
        return deadletters.print_letters(settings, args.n, args.json)
    for row in deadletters.quarantine(settings, args.n):
        _print_json(row)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salepulse", description=__doc__.splitlines()[0],
                                     epilog="--debug (anywhere): show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="the local single-node Kafka broker (KRaft, jars through Maven)")
    kafka.add_argument("action", choices=["up", "down", "status"])
    kafka.set_defaults(func=cmd_kafka)

    schemas = sub.add_parser("schemas", help="the Avro contracts")
    schemas.add_argument("action", choices=["check"])
    schemas.set_defaults(func=cmd_schemas)

    data = sub.add_parser("data", help="the public datasets under SALEPULSE_DATA_DIR")
    data.add_argument("action", choices=["check"])
    data.set_defaults(func=cmd_data)

    worker = sub.add_parser("worker", help="run the Faust worker (agents + HTTP API)")
    worker.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    worker.set_defaults(func=cmd_worker)

    collect = sub.add_parser("collect", help="run the collector alone: POST /events and /forecasts "
                             "(SALEPULSE_COLLECTOR_PORT)")
    collect.set_defaults(func=cmd_collect)

    sink = sub.add_parser("sink", help="run the ClickHouse sink")
    sink.set_defaults(func=cmd_sink)

    db = sub.add_parser("db", help="ClickHouse schema")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(func=cmd_db)

    simulate = sub.add_parser("simulate", help="produce a simulated flash-sale world")
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--rate", type=positive_float, default=2000.0, help="events per second")
    simulate.add_argument("--duration", type=positive_float, default=None, help="seconds")
    simulate.add_argument("--max-events", type=positive_int, default=None)
    simulate.add_argument("--bad-rate", type=share, default=0.0, help="share of malformed messages to inject")
    simulate.set_defaults(func=cmd_simulate)

    replay = sub.add_parser("replay", help="replay a real public dataset into Kafka")
    replay.add_argument("dataset", choices=["rees46", "taobao", "online-retail"])
    replay.add_argument("path", nargs="?", type=Path, default=None, help="file (default: under SALEPULSE_DATA_DIR)")
    replay.add_argument("--speed", type=speed, default="max", help="time scale of original gaps, or 'max'")
    replay.add_argument("--limit", type=positive_int, default=None, help="first N events only")
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
    demo.add_argument("--duration", type=positive_float, default=60.0, help="seconds of production")
    demo.add_argument("--collector", action="store_true",
                      help="also run `salepulse collect` (POST /events on SALEPULSE_COLLECTOR_PORT)")
    demo.add_argument("--rate", type=positive_float, default=2000.0, help="events per second")
    demo.add_argument("--seed", type=int, default=None, help="default: a fresh one per run")
    demo.add_argument("--bad-rate", type=share, default=0.002)
    demo.add_argument("--keep-serving", action="store_true",
                      help="keep the worker and dashboard up after the summary, until Ctrl-C or SIGTERM")
    demo.add_argument("--workers", type=positive_int, default=None,
                      help="run N velocity workers (and --preference-workers preferences workers) instead of one "
                      "worker with every role; HTTP ports follow SALEPULSE_HTTP_PORT")
    demo.add_argument("--preference-workers", type=int, default=None, metavar="M",
                      help="preferences workers beside --workers (default 1; 0 = no member rankings)")
    demo.set_defaults(func=cmd_demo)

    evaluate = sub.add_parser("evaluate", help="offline evaluation on real data")
    evaluate.add_argument("what", choices=["forecast", "recommend"])
    evaluate.add_argument("--dataset", required=True, choices=["rees46", "taobao", "online-retail", "simulated"],
                          help="forecast: online-retail or simulated; recommend: rees46, taobao or online-retail")
    evaluate.add_argument("--path", type=Path, default=None)
    evaluate.add_argument("--json", type=Path, default=None)
    evaluate.add_argument("--score-from", default=None, help="YYYY-MM-DD (forecast only)")
    evaluate.add_argument("--limit", type=int, default=None, help="first N events only (recommend only)")
    evaluate.add_argument("--view-rate", type=float, default=None,
                          help="share of novel views scored for discover (recommend only; default per dataset)")
    evaluate.set_defaults(func=cmd_evaluate)

    plan = sub.add_parser("plan", help="the stocking plan of a sale: units per sku (and warehouse) before it opens")
    plan.add_argument("--sale", required=True)
    plan.add_argument("--csv", action="store_true", help="one row per sku and warehouse, for a spreadsheet")
    plan.set_defaults(func=cmd_plan)

    bench = sub.add_parser("bench", help="run the benchmarks and write BENCHMARKS.md")
    bench.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    bench.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    bench.add_argument("--only", help="run only these sections (floor, stages, e2e, profile, scale, gc, serving; "
                       "comma-separated) and splice them into the existing report")
    bench.add_argument("--profile", action="store_true", help="profile each role with py-spy (same as --only profile)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A mistake ends in one ``error:`` line (exit 2); ``--debug`` anywhere adds the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        configure(settings.log_level, settings.log_format)
        _check_evaluate_dataset(parser, args)
        return int(args.func(args, settings) or 0)
    except CliError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad setting in the environment (Settings.from_env names the variable)
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else: one line, the traceback on request
        if debug:
            raise
        first = (str(exc).splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {first} (run again with --debug for the traceback)", file=sys.stderr)
        return 1


def _check_evaluate_dataset(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    allowed = {"forecast": ("online-retail", "simulated"), "recommend": ("rees46", "taobao", "online-retail")}
    if args.command == "evaluate" and args.dataset not in allowed[args.what]:
        parser.error(f"evaluate {args.what}: --dataset must be one of {', '.join(allowed[args.what])}")


if __name__ == "__main__":
    sys.exit(main())
