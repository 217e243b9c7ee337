"""topology.py is the one place topics are named: config, producers, docker-compose.yml and the README diagram
agree with it."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import yaml

from salepulse.streams.platform import topology
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.topology import EVENT_RECORDS, ROUTES, SPECS, TOPICS, Topics

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas" / "avro"


def _readme_diagram() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Architecture", 1)[1]
    return section.split("```", 2)[1]


def test_every_topic_field_has_exactly_one_spec() -> None:
    assert [f.name for f in fields(Topics)] == [spec.field for spec in TOPICS]


def test_records_exist_as_avro_schemas() -> None:
    names = {path.stem for path in SCHEMAS.glob("*.avsc")}
    for spec in TOPICS:
        assert set(spec.records) <= names, f"{spec.field}: {spec.records} not all in schemas/avro"


def test_routes_agree_with_the_specs() -> None:
    for kind, route in ROUTES.items():
        assert route.record in SPECS[route.field].records, f"{kind} goes to {route.field}, which does not carry it"
    assert {ROUTES[kind].record for kind in EVENT_RECORDS} == set(EVENT_RECORDS.values())


def test_topic_names_follow_the_prefix_and_overrides() -> None:
    settings = Settings.from_env({"SALEPULSE_TOPIC_PREFIX": "t1.", "SALEPULSE_TOPIC_ALERTS": "ops.alerts"})
    assert settings.topics.alerts == "ops.alerts"
    assert settings.topics.facts == "t1.velocity.facts"
    assert settings.topics.compacted == ("t1.catalog.sales", "t1.forecast.priors", "t1.stock.levels",
                                         "t1.forecast.outcomes", "t1.stock.plans")
    assert settings.topics.followed == settings.topics.compacted[:4]
    assert len(set(settings.topics.all())) == len(TOPICS)


def test_groups_are_derived_from_the_app_id() -> None:
    settings = Settings.from_env({"SALEPULSE_APP_ID": "shop", "SALEPULSE_WORKER_ROLE": "preferences"})
    assert settings.worker_group == "shop-preferences"
    assert settings.groups.ingest == "shop-ingest"
    assert Settings.from_env({"SALEPULSE_APP_ID": "shop"}).worker_group == "shop"


def test_readme_diagram_names_every_topic_with_its_key() -> None:
    diagram = _readme_diagram()
    defaults = Topics()
    for spec in TOPICS:
        name = getattr(defaults, spec.field)
        lines = [line for line in diagram.splitlines() if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", line)]
        assert lines, f"the README diagram does not show {name}"
        if spec.field in ("signals", "deadletter"):
            continue  # no key: the partition is chosen / the source's key is kept (said in words)
        assert any(f"key {spec.key}" in line for line in lines), f"the README diagram gives no 'key {spec.key}' " \
                                                                  f"for {name}"
    mentioned = set(re.findall(r"\b(?:events|catalog|forecast|stock|velocity|member|replenishment)\.[a-z]+\b",
                               diagram))
    assert mentioned <= set(defaults.all()), f"the diagram names topics topology.py does not: {mentioned}"


def test_compose_uses_the_topology_defaults() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    assert int(kafka["KAFKA_NUM_PARTITIONS"]) == Settings().partitions
    for name, service in services.items():
        env = service.get("environment") or {}
        role = env.get("SALEPULSE_WORKER_ROLE")
        if role is not None:
            assert role in topology.WORKER_ROLES, f"{name}: role {role!r}"
        renamed = [key for key in env if key.startswith("SALEPULSE_TOPIC_")]
        assert not renamed, f"{name} renames topics {renamed}: compose runs the topology's names"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_module_but_topology_names_a_topic() -> None:
    names = set(Topics().all())
    # Sample records (schemas check) carry a topic name as data, not as a destination.
    exempt = {Path(topology.__file__).resolve(), REPO / "schemas" / "check.py"}
    found = []
    for folder in ("streams", "consumers", "schemas", "deploy"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path in exempt:
                continue
            tree = ast.parse(path.read_text())
            docs = _docstrings(tree)
            found += [f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs]
    assert not found, f"topic names outside topology.py: {found}"
