"""Without java or mvn the local broker must fail with an error that tells the user what to do instead."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from salepulse.deploy.kafka.local_broker import LocalBroker, LocalBrokerError, free_ports


def _which_without(*missing: str) -> Callable[..., str | None]:
    real_which = shutil.which

    def which(cmd: str, *args: object, **kwargs: object) -> str | None:
        if cmd in missing:
            return None
        return real_which(cmd, *args, **kwargs)  # type: ignore[arg-type]

    return which


def _assert_names_alternatives(message: str) -> None:
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert "docker compose up" in message


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalBroker:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    port, controller_port = free_ports(2)
    return LocalBroker(home=tmp_path / "kafka", port=port, controller_port=controller_port)


def test_missing_java_names_both_alternatives(broker: LocalBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", _which_without("java"))
    with pytest.raises(LocalBrokerError) as excinfo:
        broker.ensure_jars()
    assert "java" in str(excinfo.value)
    _assert_names_alternatives(str(excinfo.value))


def test_missing_maven_names_both_alternatives(broker: LocalBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: "/usr/bin/java" if cmd == "java" else None)
    with pytest.raises(LocalBrokerError) as excinfo:
        broker.ensure_jars()
    assert "mvn" in str(excinfo.value)
    _assert_names_alternatives(str(excinfo.value))
    assert not broker.lib.exists(), "a failed fetch must not leave a jar folder behind"


def test_up_without_java_fails_before_starting_anything(
    broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None)
    with pytest.raises(LocalBrokerError) as excinfo:
        broker.up(timeout=5)
    _assert_names_alternatives(str(excinfo.value))
    assert not broker.pid_file.exists()
