"""A project-local, single-node Apache Kafka broker (KRaft, combined broker+controller).

Why this exists: salepulse needs a real Kafka broker for development and for integration tests,
but developer machines and CI runners do not always have a Docker daemon. Java and Maven are
enough: ``deploy/kafka/pom.xml`` names the broker as plain Maven artifacts, :meth:`LocalBroker.ensure_jars`
copies them once into ``<home>/lib``, and :meth:`LocalBroker.up` runs ``kafka.Kafka`` from those jars
as a detached background process whose pid, config, data and logs all live under ``home``.

The module deliberately depends only on the standard library and confluent-kafka (no faust), so
the CLI, the test fixtures and ad-hoc scripts can all import it cheaply.

Typical use::

    broker = LocalBroker()            # home=./.salepulse/kafka, ports 9092/9093
    bootstrap = broker.up()           # "127.0.0.1:9092"
    broker.status()                   # {"running": True, "pid": ..., "answering": True, ...}
    broker.down()
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salepulse.deploy.kafka.processes import (
    CHILDREN,
    free_port,
    free_ports,
    is_kafka_process,
    pid_alive,
    port_is_free,
    tail,
)

__all__ = [
    "ALTERNATIVES_HINT",
    "DEFAULT_STATE_DIR",
    "POM_PATH",
    "LocalBroker",
    "LocalBrokerError",
    "broker_answers",
    "default_state_dir",
    "free_port",
    "free_ports",
]

log = logging.getLogger(__name__)

#: The Maven project that lists the broker's jars (shipped as package data next to this module).
POM_PATH: Path = Path(__file__).with_name("pom.xml")

#: Project-local state folder, relative to the current directory unless ``SALEPULSE_STATE_DIR`` is set.
DEFAULT_STATE_DIR: str = ".salepulse"

#: Printed in every "cannot run a local broker" error so the user knows the two ways around it.
ALTERNATIVES_HINT: str = (
    "Alternatives: set KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing Kafka broker, "
    "or start one with Docker via `docker compose up`."
)

_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
_MIN_JAVA_MAJOR = 17  # Kafka 4.x brokers require Java 17+.
_POM_STAMP = ".pom-sha256"
_FORMAT_STAMP = "salepulse-format.properties"
_MAVEN_TIMEOUT_S = 1800.0



class LocalBrokerError(RuntimeError):
    """Raised when the local broker cannot be fetched, started or stopped; the message says why."""


def default_state_dir() -> Path:
    """The project-local state folder (``$SALEPULSE_STATE_DIR`` or ``./.salepulse``), made absolute.

    Absolute so a broker object keeps pointing at the same files if the process later changes directory.
    """
    return Path(os.environ.get("SALEPULSE_STATE_DIR") or DEFAULT_STATE_DIR).expanduser().resolve()


def _default_home() -> Path:
    return default_state_dir() / "kafka"


def _split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    endpoints: list[tuple[str, int]] = []
    for item in bootstrap.split(","):
        item = item.strip()
        if "://" in item:
            item = item.split("://", 1)[1]
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            continue
        endpoints.append((host.strip("[]") or "127.0.0.1", int(port)))
    return endpoints


def _tcp_reachable(bootstrap: str, timeout: float) -> bool:
    """Cheap pre-check so an absent broker costs one refused connect, not a librdkafka timeout."""
    for host, port in _split_bootstrap(bootstrap):
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=max(timeout, 0.1)):
            return True
    return False


def broker_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request within ``timeout`` seconds.

    A listening TCP port is not enough (the broker opens it before it can serve requests), so this
    asks for cluster metadata through confluent-kafka's AdminClient and requires at least one broker.
    """
    if not _tcp_reachable(bootstrap, min(timeout, 2.0)):
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": max(int(timeout * 1000), 100),
            "socket.connection.setup.timeout.ms": max(int(timeout * 1000), 1000),
            # librdkafka would print every refused connection to stderr while we poll a starting broker.
            "log_level": 0,
        }
    )
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        log.debug("kafka metadata request failed", extra={"bootstrap": bootstrap, "error": str(exc)})
        return False
    return bool(metadata.brokers)


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (like ``random-uuid``).

    Ids starting with ``-`` are avoided because the storage tool would parse them as an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def _template(name: str) -> string.Template:
    return string.Template(Path(__file__).with_name(name).read_text())


def _escape_properties_value(value: str) -> str:
    """Java .properties treats backslashes as escapes; paths must survive the round trip."""
    return value.replace("\\", "\\\\")


@dataclass
class LocalBroker:
    """One single-node KRaft Kafka broker whose config, data, logs and pid file live under ``home``.

    ``lib_dir`` defaults to ``home/lib``; tests point it at a shared cache so private brokers in
    temporary homes do not re-run Maven. ``heap_opts`` is modest because the target machines are small.
    """

    home: Path = field(default_factory=_default_home)
    port: int = 9092
    controller_port: int = 9093
    host: str = "127.0.0.1"
    lib_dir: Path | None = None
    heap_opts: tuple[str, ...] = ("-Xms256m", "-Xmx1g")
    node_id: int = 1

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().resolve()
        self.lib_dir = Path(self.lib_dir).expanduser().resolve() if self.lib_dir else self.home / "lib"
        if self.port == self.controller_port:
            raise LocalBrokerError(f"port and controller_port must differ (both are {self.port})")

    # ------------------------------------------------------------------ paths

    @property
    def bootstrap(self) -> str:
        """The client bootstrap address, e.g. ``127.0.0.1:9092``."""
        return f"{self.host}:{self.port}"

    @property
    def lib(self) -> Path:
        """Folder with the broker's jars (``lib_dir`` after defaulting)."""
        assert self.lib_dir is not None
        return self.lib_dir

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs_dir / "kafka.out"

    # ------------------------------------------------------------------ tools

    @staticmethod
    def _java() -> str:
        """Path to ``java``: ``$JAVA_HOME/bin/java`` if present, else the one on PATH."""
        java_home = os.environ.get("JAVA_HOME")
        if java_home:
            candidate = Path(java_home) / "bin" / "java"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        found = shutil.which("java")
        if not found:
            raise LocalBrokerError(
                f"Cannot run the local Kafka broker: `java` (JDK/JRE {_MIN_JAVA_MAJOR}+) was not found "
                f"on PATH or in JAVA_HOME. {ALTERNATIVES_HINT}"
            )
        return found

    @staticmethod
    def _mvn() -> str:
        found = shutil.which("mvn")
        if not found:
            raise LocalBrokerError(
                "Cannot fetch the local Kafka broker's jars: `mvn` (Apache Maven) was not found on PATH. "
                f"{ALTERNATIVES_HINT}"
            )
        return found

    @staticmethod
    def _check_java_version(java: str) -> None:
        """Fail early with a readable message instead of a JVM UnsupportedClassVersionError."""
        try:
            out = subprocess.run(
                [java, "-version"], capture_output=True, text=True, timeout=30, check=False
            ).stderr
        except (OSError, subprocess.SubprocessError) as exc:
            raise LocalBrokerError(f"`{java} -version` failed: {exc}. {ALTERNATIVES_HINT}") from exc
        match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
        if not match:
            log.warning("could not parse java version", extra={"java": java, "output": out[:200]})
            return
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_392" style
            major = int(match.group(2))
        if major < _MIN_JAVA_MAJOR:
            raise LocalBrokerError(
                f"Kafka 4.x needs Java {_MIN_JAVA_MAJOR}+, but {java} is Java {major}. {ALTERNATIVES_HINT}"
            )

    # ------------------------------------------------------------------ jars

    @staticmethod
    def pom_hash(pom: Path = POM_PATH) -> str:
        """SHA-256 of the pom; the jar cache is keyed on it so editing the pom refetches."""
        return hashlib.sha256(pom.read_bytes()).hexdigest()

    def jars_ready(self) -> bool:
        """True when ``lib`` holds jars fetched from the current pom."""
        stamp = self.lib / _POM_STAMP
        try:
            return stamp.read_text().strip() == self.pom_hash() and any(self.lib.glob("kafka_*.jar"))
        except OSError:
            return False

    @contextlib.contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        """Inter-process lock so parallel test sessions sharing a jar cache fetch only once."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure_jars(self) -> Path:
        """Copy the broker's runtime jars into ``lib`` with Maven, once per pom version; return ``lib``.

        The fetch goes to a temporary sibling folder that replaces ``lib`` only when Maven succeeded,
        so an interrupted download never leaves a half-filled cache that looks complete.
        """
        self._java()  # Jars without a JVM are useless; say so before a long download.
        if self.jars_ready():
            return self.lib
        lock_path = self.lib.parent / f".{self.lib.name}.lock"
        with self._lock(lock_path):
            if self.jars_ready():  # Another process fetched while we waited for the lock.
                return self.lib
            mvn = self._mvn()
            digest = self.pom_hash()
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.lib.name}.fetch-", dir=self.lib.parent))
            cmd = [
                mvn, "-q", "-B", "-Dstyle.color=never",
                "-f", str(POM_PATH),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ]  # fmt: skip
            log.info(
                "fetching kafka broker jars with maven into %s",
                self.lib,
                extra={"lib": str(self.lib), "pom": str(POM_PATH)},
            )
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise LocalBrokerError(
                    f"Maven did not finish fetching the Kafka jars within {_MAVEN_TIMEOUT_S:.0f}s. "
                    f"{ALTERNATIVES_HINT}"
                ) from exc
            if proc.returncode != 0 or not any(tmp.glob("kafka_*.jar")):
                shutil.rmtree(tmp, ignore_errors=True)
                output = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
                raise LocalBrokerError(
                    f"Maven failed to fetch the Kafka jars (exit {proc.returncode}): {' '.join(cmd)}\n"
                    f"{output}\n{ALTERNATIVES_HINT}"
                )
            (tmp / _POM_STAMP).write_text(digest + "\n")
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every local broker home.
            old: Path | None = None
            if self.lib.exists():
                old = self.lib.with_name(f".{self.lib.name}.old-{os.getpid()}-{time.time_ns()}")
                self.lib.rename(old)
            tmp.rename(self.lib)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            log.info(
                "kafka broker jars ready in %s",
                self.lib,
                extra={
                    "lib": str(self.lib),
                    "jars": sum(1 for _ in self.lib.glob("*.jar")),
                    "seconds": round(time.monotonic() - started, 1),
                },
            )
        return self.lib

    # ------------------------------------------------------------------ config

    def server_properties(self) -> str:
        """The broker's KRaft config (``server.properties`` next to this module): one node acting as broker and
        controller, sized for a laptop."""
        return _template("server.properties").substitute(
            node_id=self.node_id, host=self.host, port=self.port, controller_port=self.controller_port,
            data_dir=_escape_properties_value(str(self.data_dir)))

    def log4j_properties(self) -> str:
        """Log4j2 config (``log4j2.properties``): everything to ``logs/server.log`` (size-rolled), no console."""
        return _template("log4j2.properties").substitute(logs_dir=_escape_properties_value(str(self.logs_dir)))

    def _write_configs(self) -> None:
        for folder in (self.home, self.data_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.server_properties())
        self.log4j_file.write_text(self.log4j_properties())

    def _jvm_base(self, java: str) -> list[str]:
        return [
            java,
            *self.heap_opts,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            str(self.lib / "*"),  # expanded by the JVM itself, not by a shell
        ]

    def _format_storage(self, java: str) -> None:
        """Format ``data`` once (KRaft needs a cluster id and a bootstrap checkpoint before first start).

        The controller endpoint is baked into the formatted quorum, so a later port change would leave
        the broker unable to find its controller; that case is refused with a clear message instead.
        """
        stamp = self.home / _FORMAT_STAMP
        endpoint = f"{self.host}:{self.controller_port}"
        if (self.data_dir / "meta.properties").exists():
            recorded = ""
            with contextlib.suppress(OSError):
                for line in stamp.read_text().splitlines():
                    if line.startswith("controller.endpoint="):
                        recorded = line.split("=", 1)[1].strip()
            if recorded and recorded != endpoint:
                raise LocalBrokerError(
                    f"{self.data_dir} was formatted for controller {recorded}, not {endpoint}. "
                    f"Use controller_port={recorded.rsplit(':', 1)[1]} or delete {self.data_dir} "
                    "(this discards the local broker's topics)."
                )
            return
        cluster_id = _new_cluster_id()
        cmd = [
            *self._jvm_base(java),
            _STORAGE_TOOL_CLASS, "format",
            "-t", cluster_id,
            "-c", str(self.config_file),
            "--standalone",
        ]  # fmt: skip
        log.info("formatting kafka storage", extra={"data_dir": str(self.data_dir), "cluster_id": cluster_id})
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=self.home)
        if proc.returncode != 0:
            raise LocalBrokerError(
                f"Formatting Kafka storage failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        stamp.write_text(f"cluster.id={cluster_id}\ncontroller.endpoint={endpoint}\n")

    # ------------------------------------------------------------------ lifecycle

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The pid of this home's broker process if it is alive, else None (stale pid files are removed)."""
        pid = self._read_pid()
        if pid is None:
            return None
        if pid_alive(pid) and is_kafka_process(pid, _MAIN_CLASS):
            return pid
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        return None

    def _failure_details(self) -> str:
        parts = []
        for path in (self.stdout_log, self.server_log):
            text = tail(path)
            if text:
                parts.append(f"--- tail of {path} ---\n{text}")
        return "\n".join(parts) or f"(no output in {self.logs_dir})"

    def up(self, timeout: float = 90.0) -> str:
        """Start the broker unless one already answers on ``port``; return the bootstrap address.

        Idempotent: a broker that already answers (ours or anyone's) is reused, and a process of ours
        that is still starting is waited for rather than duplicated. Raises :class:`LocalBrokerError`
        with the log tail if the JVM exits or does not answer within ``timeout`` seconds (in which case
        it is stopped, so no half-started broker is left behind).
        """
        bootstrap = self.bootstrap
        if broker_answers(bootstrap, timeout=3.0):
            log.info("kafka broker already answering on %s", bootstrap, extra={"bootstrap": bootstrap})
            return bootstrap

        pid = self.running_pid()
        if pid is None:
            self.ensure_jars()
            java = self._java()
            self._check_java_version(java)
            for name, port in (("port", self.port), ("controller_port", self.controller_port)):
                if not port_is_free(self.host, port):
                    raise LocalBrokerError(
                        f"{self.host}:{port} ({name}) is in use by something that is not an answering "
                        f"Kafka broker; pick another port or stop that process. {ALTERNATIVES_HINT}"
                    )
            self._write_configs()
            self._format_storage(java)
            cmd = [*self._jvm_base(java), _MAIN_CLASS, str(self.config_file)]
            with self.stdout_log.open("ab") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    cmd,
                    cwd=self.home,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the caller's Ctrl-C and terminal
                    close_fds=True,
                )
            pid = proc.pid
            CHILDREN[pid] = proc
            self.pid_file.write_text(f"{pid}\n")
            log.info(
                "kafka broker starting (pid %d, %s)",
                pid,
                bootstrap,
                extra={"pid": pid, "bootstrap": bootstrap, "home": str(self.home)},
            )
        else:
            log.info("kafka broker pid %d already running; waiting for it", pid, extra={"pid": pid})

        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    self.pid_file.unlink()
                raise LocalBrokerError(
                    f"The local Kafka broker (pid {pid}) exited during startup.\n{self._failure_details()}"
                )
            if broker_answers(bootstrap, timeout=2.0):
                log.info(
                    "kafka broker up on %s (pid %d)",
                    bootstrap,
                    pid,
                    extra={
                        "pid": pid,
                        "bootstrap": bootstrap,
                        "seconds": round(time.monotonic() - started, 1),
                    },
                )
                return bootstrap
            time.sleep(0.5)
        details = self._failure_details()
        self.down()
        raise LocalBrokerError(
            f"The local Kafka broker (pid {pid}) did not answer on {bootstrap} within {timeout:.0f}s; "
            f"it was stopped.\n{details}"
        )

    def down(self, timeout: float = 30.0) -> bool:
        """Stop this home's broker: SIGTERM (controlled shutdown), then SIGKILL after ``timeout`` seconds.

        Returns True if a process was stopped, False if none was running. Only the pid recorded in
        ``home/kafka.pid`` is signalled, never a broker started some other way.
        """
        pid = self.running_pid()
        if pid is None:
            log.info("kafka broker not running", extra={"home": str(self.home)})
            return False
        log.info("stopping kafka broker pid %d", pid, extra={"pid": pid})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            log.warning("kafka broker ignored SIGTERM; killing it", extra={"pid": pid, "timeout": timeout})
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10.0
            while time.monotonic() < kill_deadline and pid_alive(pid):
                time.sleep(0.1)
            if pid_alive(pid):
                raise LocalBrokerError(f"Kafka broker pid {pid} survived SIGKILL")
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        log.info("kafka broker pid %d stopped", pid, extra={"pid": pid})
        return True

    def status(self) -> dict[str, Any]:
        """Snapshot for CLIs and health checks.

        Keys: ``running`` (our process is alive), ``pid``, ``bootstrap``, ``answering`` (some broker
        answers metadata on the port, ours or not), ``home``, ``log`` (path of server.log).
        """
        pid = self.running_pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "bootstrap": self.bootstrap,
            "answering": broker_answers(self.bootstrap, timeout=2.0),
            "home": str(self.home),
            "log": str(self.server_log),
        }
