"""docker-compose.yml, the Dockerfile and the Grafana provisioning agree with each other and with the code.

Nothing here needs Docker: the files are parsed and cross-checked against ``salepulse.streams.platform.config`` (the
environment variables ``Settings.from_env`` reads), ``salepulse.streams.tools.cli.build_parser()`` (the subcommands) and
the ClickHouse DDL in ``deploy/clickhouse`` (the tables and views a dashboard may query).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from salepulse.streams.platform import config
from salepulse.streams.runtime.serving import off_loop_endpoints
from salepulse.streams.tools.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards"
DASHBOARDS = GRAFANA / "dashboards"
DDL_DIR = REPO / "deploy" / "clickhouse"

#: The services that run the salepulse image, so their environment is read by Settings.from_env.
SALEPULSE_SERVICES = ("migrate", "worker", "preferences", "collector", "sink", "simulator")
#: The worker services, one per role (issue #12: scaled by replicas, behind the load balancer).
WORKER_SERVICES = {"worker": "velocity", "preferences": "preferences"}
NGINX_CONF = REPO / "deploy" / "nginx" / "salepulse.conf"
ENV_EXAMPLE = REPO / ".env.example"
#: Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $VAR; `$$` is a dollar.
_INTERPOLATION = re.compile(r"\$(?:\{(\w+)(?:(:?[-?+])([^}]*))?\}|(\w+))")
#: Variables that hold a secret: compose must require them (`${VAR:?...}`), never default them.
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET")


def _env_example() -> dict[str, str]:
    """The variables .env.example documents, each given a placeholder value as a user would."""
    names = re.findall(r"^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M)
    return {name: f"{name.lower()}-value" for name in names}


def _interpolate(value: str) -> str:
    """The value compose would use with the .env a user writes from .env.example (defaults applied)."""
    env = _env_example()
    value = value.replace("$$", "\0")

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        if env.get(name):
            return env[name]
        assert not (m.group(2) or "").endswith("?"), f"{name} is required but .env.example does not list it"
        return m.group(3) or ""

    return _INTERPOLATION.sub(one, value).replace("\0", "$")


def test_secrets_have_no_defaults_and_are_documented_in_env_example() -> None:
    text = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    documented = set(_env_example())
    secrets = set()
    for m in _INTERPOLATION.finditer(text):
        name, operator = m.group(1) or m.group(4), m.group(2) or ""
        if not SECRET.search(name):
            continue
        secrets.add(name)
        assert name in documented, f"{name} is used by docker-compose.yml but not documented in .env.example"
        if name != "SALEPULSE_READ_TOKEN":  # optional: the write token reads too
            assert operator == ":?", f"{name} must be required (${{{name}:?...}}), got {m.group(0)}"
        assert not (operator.endswith("-") and m.group(3)), f"{name} has a default value: {m.group(0)}"
    assert {"CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "SALEPULSE_API_TOKEN"} <= secrets
    for service in yaml.safe_load(COMPOSE_FILE.read_text())["services"].values():
        environment = service.get("environment") or {}
        for key, raw in (environment.items() if isinstance(environment, dict) else ()):
            if SECRET.search(str(key)):
                assert str(raw).startswith("${"), f"{key} is written literally in docker-compose.yml: {raw!r}"
    example = ENV_EXAMPLE.read_text()
    assert all(re.search(rf"^{name}=$", example, flags=re.M) for name in documented), (
        ".env.example must leave every value empty (no shared default secret)")
    assert ".env" in (REPO / ".gitignore").read_text().split(), ".env must be git-ignored"


def test_the_worker_requires_a_write_token(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKER_SERVICES:
        settings = config.Settings.from_env(_environment(services[name]))
        assert settings.api_token and settings.http_host == "0.0.0.0", name


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        "no services in docker-compose.yml"
    )
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", "NAME"]
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        env = dict(pairs)
    return {str(k): _interpolate(str(v)) for k, v in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of every mount, short or long syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append(
                (volume.get("type", "volume"), str(volume.get("source", "")), str(volume["target"]))
            )
            continue
        parts = str(volume).split(":")
        if len(parts) == 1:  # anonymous volume
            mounts.append(("volume", "", parts[0]))
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "a salepulse service needs an explicit command (the image's default is --help)"
    return [str(part) for part in command] if isinstance(command, list) else str(command).split()


def _published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(published, target) pairs, short ("6066:6066", "127.0.0.1:6066:6066/tcp") or long syntax."""
    pairs = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            pairs.append((str(port.get("published", "")), int(port["target"])))
            continue
        parts = _interpolate(str(port)).split("/")[0].split(":")
        pairs.append((parts[-2] if len(parts) > 1 else "", int(parts[-1])))
    return pairs


# ---- the environment variables Settings.from_env reads -------------------------------------------


def _settings_variables() -> tuple[set[str], set[str]]:
    """Literal names read by ``Settings.from_env`` (``get("NAME", ...)``, ``KAFKA_SECURITY_VARIABLES``)
    and the prefixes of names it builds with f-strings (``get(f"SALEPULSE_TOPIC_{...}")``)."""
    source = Path(config.__file__).read_text()
    from_env = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "from_env"
    )
    names: set[str] = set(config.KAFKA_SECURITY_VARIABLES)
    prefixes: set[str] = set()
    for node in ast.walk(from_env):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        called = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        )
        if called != "get":
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
        elif isinstance(first, ast.JoinedStr) and first.values and isinstance(first.values[0], ast.Constant):
            prefixes.add(str(first.values[0].value))
    return names, prefixes


def _is_read_by_settings(name: str, value: str, names: set[str], prefixes: set[str]) -> bool:
    if name in names:
        return True
    # A built name (SALEPULSE_TOPIC_ORDER): read if setting it changes what from_env produces.
    if any(name.startswith(prefix) for prefix in prefixes):
        probe = value or "probe-value"
        return config.Settings.from_env({name: probe}) != config.Settings.from_env({})
    return False


def test_the_settings_variable_scan_finds_the_known_names() -> None:
    names, prefixes = _settings_variables()
    for expected in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "SCHEMA_REGISTRY_URL",
        "CLICKHOUSE_URL",
        "SALEPULSE_STATE_DIR",
        "SALEPULSE_HTTP_PORT",
        "SALEPULSE_HTTP_HOST",
        "KAFKA_SASL_PASSWORD",
    ):
        assert expected in names
    assert "SALEPULSE_TOPIC_" in prefixes
    assert _is_read_by_settings("SALEPULSE_TOPIC_ORDER", "shop.orders", names, prefixes)
    assert not _is_read_by_settings("SALEPULSE_TOPIC_NOPE", "x", names, prefixes)
    assert not _is_read_by_settings("SALEPULSE_HTTP_PROT", "6066", names, prefixes)


# ---- docker-compose.yml --------------------------------------------------------------------------


def test_every_depends_on_target_exists(services: dict[str, dict[str, Any]]) -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert condition in conditions, f"{name} -> {target}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), (
                    f"{name} waits for {target} healthy: no healthcheck"
                )


def test_bind_mounts_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for kind, source, target in _volume_mounts(service):
            if kind == "bind":
                host = (COMPOSE_FILE.parent / _interpolate(source)).resolve()
                assert host.exists(), f"{name}: bind mount source {source} does not exist in the repo"
                assert host.is_relative_to(REPO), f"{name}: bind mount {source} leaves the repository"
            elif kind == "volume" and source:
                used.add(source)
                assert source in declared, f"{name}: named volume {source!r} is not declared under volumes:"
            assert target.startswith("/"), f"{name}: mount target {target!r} is not absolute"
    assert declared <= used, f"declared but unused volumes: {sorted(declared - used)}"


def test_salepulse_services_use_only_variables_that_settings_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    names, prefixes = _settings_variables()
    for name in SALEPULSE_SERVICES:
        assert name in services, f"service {name!r} is missing"
        for variable, value in _environment(services[name]).items():
            assert _is_read_by_settings(variable, value, names, prefixes), (
                f"{name}: environment variable {variable} is not read by Settings.from_env "
                "(streams/platform/config.py)"
            )


def test_salepulse_environment_values_parse(services: dict[str, dict[str, Any]]) -> None:
    for name in SALEPULSE_SERVICES:
        env = _environment(services[name])
        settings = config.Settings.from_env(env)  # int()/float() conversions raise on a bad value
        assert env.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092", f"{name}: Kafka is the compose broker"
        assert settings.bootstrap == "kafka:9092"
        assert (
            settings.clickhouse_dsn.startswith("http://") and "@clickhouse:8123/" in settings.clickhouse_dsn
        )
        assert str(settings.state_dir) == "/data"


def test_salepulse_commands_are_real_subcommands(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    expected = {
        "migrate": ("db", "migrate"),
        "worker": ("worker",),
        "preferences": ("worker",),
        "sink": ("sink",),
        "simulator": ("simulate",),
    }
    for name, prefix in expected.items():
        argv = _command(services[name])
        assert tuple(argv[: len(prefix)]) == prefix, f"{name} runs {argv}, expected {' '.join(prefix)} ..."
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                args = parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{name}: `salepulse {' '.join(argv)}` is rejected by the CLI: {err.getvalue()}")
        assert callable(args.func)
    assert parser.parse_args(_command(services["simulator"])).rate == 2000


def test_salepulse_services_share_the_image_built_here(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name].get("image") for name in SALEPULSE_SERVICES}
    assert len(images) == 1 and None not in images, f"salepulse services use different images: {images}"
    for name in SALEPULSE_SERVICES:
        build = services[name].get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        assert context in (".", "./"), f"{name} must build the top-level Dockerfile"
    assert services["simulator"].get("profiles") == ["simulate"]
    assert _depends_on(services["migrate"]).get("clickhouse") == "service_healthy"
    assert _depends_on(services["worker"]).get("kafka") == "service_healthy"
    assert _depends_on(services["sink"]).get("migrate") == "service_completed_successfully"


def test_worker_port_and_healthcheck_match_the_settings(services: dict[str, dict[str, Any]]) -> None:
    default_port = config.Settings().http_port
    for name in WORKER_SERVICES:
        worker = services[name]
        settings = config.Settings.from_env(_environment(worker))
        assert settings.http_port == default_port, f"the compose {name} must listen on the default port"
        assert settings.http_host == "0.0.0.0", "bound to localhost the port would not be reachable from the api"
        # Replicas cannot share a host port: only the load balancer publishes one.
        assert not _published_ports(worker), f"{name} publishes {worker.get('ports')}; the api service does"
        # Velocity workers also expose their read server (GET /sales off the event loop), where the api sends it.
        assert [int(port) for port in worker.get("expose") or []] == [default_port, *(
            [settings.serving_port] if settings.counts_velocity else [])]
        test = " ".join(str(part) for part in worker["healthcheck"]["test"])
        assert f":{default_port}/health" in test
    assert _published_ports(services["api"]) == [(str(default_port), default_port)], (
        "the HTTP API is published on the default port, through the load balancer")


def test_split_roles_with_replicas_within_the_partitions(services: dict[str, dict[str, Any]]) -> None:
    for name, role in WORKER_SERVICES.items():
        env = _environment(services[name])
        settings = config.Settings.from_env(env)
        assert settings.worker_role == role, f"{name} runs role {settings.worker_role}, expected {role}"
        assert not _volume_mounts(services[name]), f"{name}: replicas must not share a state volume"
        replicas = int(_interpolate(str(services[name]["deploy"]["replicas"])))
        # A consumer group gives each partition to one member: more replicas than partitions would idle.
        assert 1 <= replicas <= settings.partitions, f"{name}: {replicas} replicas, {settings.partitions} partitions"
    assert int(_interpolate(str(services["worker"]["deploy"]["replicas"]))) >= 2, "several velocity workers"


def _nginx_blocks(text: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(upstream name -> its ``server`` addresses, location prefix -> the upstream it proxies to)."""
    text = re.sub(r"#.*", "", text)
    upstreams = {m.group(1): re.findall(r"\bserver\s+([\w.-]+:\d+)", m.group(2))
                 for m in re.finditer(r"upstream\s+(\w+)\s*\{([^}]*)\}", text)}
    locations = {m.group(1): m.group(2) for m in re.finditer(
        r"location\s+((?:[=~^*]+\s+)?[^\s{]+)\s*\{[^}]*?proxy_pass\s+http://(\w+)\s*;", text)}
    return upstreams, locations


def test_load_balancer_routes_each_path_to_its_role(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert api["image"].startswith("nginx:")
    major, minor = (int(part) for part in api["image"].split(":")[1].split("-")[0].split(".")[:2])
    assert (major, minor) >= (1, 28), "`server ... resolve` in an upstream needs nginx >= 1.27.3 (a stable 1.28)"
    mounts = {(COMPOSE_FILE.parent / source).resolve(): target for kind, source, target in _volume_mounts(api)
              if kind == "bind"}
    assert mounts.get(NGINX_CONF.resolve()) == "/etc/nginx/conf.d/default.conf"
    assert set(WORKER_SERVICES) <= set(_depends_on(api))
    upstreams, locations = _nginx_blocks(NGINX_CONF.read_text())
    port = config.Settings().http_port
    assert re.search(rf"\blisten\s+{port}\s*;", NGINX_CONF.read_text())

    def roles(upstream: str, reads: bool = False) -> set[str]:
        found = set()
        for address in upstreams[upstream]:
            host, server_port = address.rsplit(":", 1)
            assert host in services, f"nginx upstream {upstream} names {host}, which is no compose service"
            settings = config.Settings.from_env(_environment(services[host]))
            assert int(server_port) == (settings.serving_port if reads else settings.http_port)
            assert int(server_port) in [int(p) for p in services[host].get("expose") or []]
            found.add(settings.worker_role)
        return found

    assert roles(locations["/members/"]) == {"preferences"}, "member requests go to preferences workers"
    assert roles(locations["/"]) == {"velocity"}, "sales, dashboard, writes and ops go to velocity workers"
    # What the velocity workers' read servers answer goes there, and nothing else (/sales/{id}/plan stays on 6066).
    reads = {location for location, upstream in locations.items() if upstream == "velocity_reads"}
    assert all(roles(locations[location], reads=True) == {"velocity"} for location in reads)

    def read_location(path: str) -> bool:
        return any(path == loc.removeprefix("= ") if loc.startswith("= ") else re.search(loc.removeprefix("~ "), path)
                   for loc in reads)

    for endpoint in off_loop_endpoints("velocity"):
        assert read_location(endpoint.path.replace("{sale_id}", "s-1")), f"{endpoint.path} misses the read servers"
    assert not read_location("/sales/s-1/plan") and not read_location("/api/dashboard")
    # POST /events goes to the collector processes, on their port, and nothing else does
    collect = {location for location, upstream in locations.items() if upstream == "collectors"}
    assert collect == {"= /events"}
    for address in upstreams["collectors"]:
        host, server_port = address.rsplit(":", 1)
        assert services[host]["command"] == ["collect"]
        settings = config.Settings.from_env(_environment(services[host]))
        assert int(server_port) == settings.collector_port and settings.api_token and settings.http_host == "0.0.0.0"
        assert str(server_port) in [str(p) for p in services[host].get("expose") or []]
    assert set(locations) - reads - collect == {"/members/", "/"}


def test_infrastructure_services(services: dict[str, dict[str, Any]]) -> None:
    kafka = _environment(services["kafka"])
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert "//kafka:9092" in advertised, "other containers reach the broker at kafka:9092"
    host_listener = re.search(r"//localhost:(\d+)", advertised)
    assert host_listener, "one listener must be advertised to the host"
    assert any(target == int(host_listener.group(1)) for _, target in _published_ports(services["kafka"]))
    voters = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{kafka['KAFKA_NODE_ID']}@kafka:")
    listener_names = {entry.split("://")[0] for entry in kafka["KAFKA_LISTENERS"].split(",")}
    protocol_map = {entry.split(":")[0] for entry in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert listener_names <= protocol_map
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] in listener_names
    assert len(kafka["CLUSTER_ID"]) == 22, "a KRaft cluster id is a base64url-encoded UUID"

    clickhouse = _environment(services["clickhouse"])
    dsn = config.Settings.from_env(_environment(services["sink"])).clickhouse_dsn
    assert dsn == (
        f"http://{clickhouse['CLICKHOUSE_USER']}:{clickhouse['CLICKHOUSE_PASSWORD']}"
        f"@clickhouse:8123/{clickhouse['CLICKHOUSE_DB']}"
    )
    for name in ("kafka", "clickhouse", "grafana", "worker"):
        assert services[name].get("healthcheck"), f"{name} has no healthcheck"


# ---- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_entrypoint_and_user() -> None:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    entrypoints = [line for line in lines if line.upper().startswith("ENTRYPOINT")]
    assert entrypoints, "no ENTRYPOINT"
    assert json.loads(entrypoints[-1].split(None, 1)[1]) == ["salepulse"]
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert any(line.upper().startswith("FROM") and "python:3.11-slim" in line for line in lines) or any(
        "python:3.11-slim" in line for line in lines if line.upper().startswith("ARG")
    )


# ---- Grafana -------------------------------------------------------------------------------------


def _ddl_relations() -> set[str]:
    pattern = re.compile(
        r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|(?:MATERIALIZED\s+)?VIEW|DICTIONARY)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
        r"(?:`?\w+`?\.)?`?(\w+)`?",
        re.IGNORECASE,
    )
    return {m.group(1) for path in sorted(DDL_DIR.glob("*.sql")) for m in pattern.finditer(path.read_text())}


def _referenced_relations(sql: str) -> set[str]:
    """Identifiers after FROM/JOIN without a database prefix; ``FROM (subquery)`` and ``FROM f(...)`` skip."""
    sql = re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)  # string literals cannot hide a FROM
    found = set()
    for m in re.finditer(r"\b(?:FROM|JOIN)\s+(?:`?(\w+)`?\.)?`?(\w+)`?(\s*\()?", sql, re.IGNORECASE):
        if m.group(3):  # FROM numbers(10), FROM (SELECT ...) is caught by \w+ failing
            continue
        found.add(m.group(2))
    return found


def _provisioned_datasources() -> list[dict[str, Any]]:
    sources = []
    for path in sorted(DATASOURCES.glob("*.y*ml")):
        sources += yaml.safe_load(path.read_text()).get("datasources") or []
    return sources


def _dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_ddl_scan_finds_the_tables() -> None:
    assert {
        "velocity_facts",
        "velocity_minute",
        "events_hourly",
        "forecasts",
        "forecasts_history",
        "alerts",
    } <= _ddl_relations()
    assert _referenced_relations(
        "SELECT 1 FROM salepulse.alerts FINAL JOIN (SELECT 1 FROM forecasts) USING x"
    ) == {"alerts", "forecasts"}
    assert _referenced_relations("SELECT 'FROM nowhere' FROM numbers(3)") == set()


def test_datasource_provisioning() -> None:
    sources = _provisioned_datasources()
    assert len(sources) == 1
    source = sources[0]
    assert source["type"] == "grafana-clickhouse-datasource" and source.get("uid")
    assert source["jsonData"]["host"] == "clickhouse"
    assert int(source["jsonData"]["port"]) == 8123 and source["jsonData"]["protocol"] == "http"
    assert source["jsonData"]["defaultDatabase"] == "salepulse"
    assert source["secureJsonData"]["password"]


def test_grafana_service_mounts_the_provisioning(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    env = _environment(grafana)
    plugins = env.get("GF_PLUGINS_PREINSTALL_SYNC", "") + "," + env.get("GF_INSTALL_PLUGINS", "")
    assert "grafana-clickhouse-datasource" in plugins.split(",")
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target
        for kind, source, target in _volume_mounts(grafana)
        if kind == "bind"
    }
    mounted = set(mounts)
    assert DATASOURCES.resolve() in mounted or (GRAFANA / "provisioning").resolve() in mounted
    assert DASHBOARDS.resolve() in mounted
    # The dashboard provider reads the folder the dashboards are mounted at.
    providers = [
        provider
        for path in sorted(DASHBOARD_PROVIDERS.glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert [p["options"]["path"] for p in providers] == [mounts[DASHBOARDS.resolve()]]
    # Datasource secrets referenced as ${VAR} are set on the grafana container.
    for source in _provisioned_datasources():
        text = json.dumps(source)
        for variable in re.findall(r"\$\{(\w+)\}|\$__env\{(\w+)\}", text):
            name = variable[0] or variable[1]
            assert name in env, f"the datasource reads ${name}, which the grafana service does not set"


@pytest.mark.parametrize("path", _dashboard_files(), ids=lambda p: p.name)
def test_dashboard_queries_only_use_existing_relations_and_the_provisioned_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard.get("uid") and dashboard.get("title")
    assert dashboard.get("refresh") == "5s"
    relations = _ddl_relations()
    uids = {source["uid"] for source in _provisioned_datasources()}
    queries = 0
    for node in _walk(dashboard):
        datasource = node.get("datasource")
        if isinstance(datasource, dict) and datasource.get("type") not in (None, "grafana", "datasource"):
            assert datasource.get("uid") in uids, f"unknown datasource {datasource} in {path.name}"
        sql = node.get("rawSql")
        if isinstance(sql, str):
            queries += 1
            used = _referenced_relations(sql)
            assert used, f"query without FROM in {path.name}: {sql}"
            assert used <= relations, (
                f"{path.name}: {sorted(used - relations)} not created in deploy/clickhouse"
            )
    assert queries >= 4, "the dashboard should have queries"


def test_dashboard_covers_the_four_views() -> None:
    sql = " ".join(
        node["rawSql"]
        for path in _dashboard_files()
        for node in _walk(json.loads(path.read_text()))
        if isinstance(node.get("rawSql"), str)
    )
    assert re.search(r"FROM velocity_minute\b", sql)
    assert re.search(r"FROM forecasts FINAL\b", sql) and "p10" in sql and "expert_prior" in sql
    assert "stock_available" in sql
    assert re.search(r"FROM alerts FINAL\b", sql) and "'resolved'" in sql
    assert re.search(r"FROM events_hourly\b", sql)
