"""Process and port helpers of the local broker and the benches: free ports, live pids, who listens on a port,
CPU time, log tails (standard library only, Linux ``/proc`` where noted)."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import socket
import subprocess
from pathlib import Path

# Brokers started by this process, so their exit status is collected (no zombies, no Popen
# "still running" ResourceWarnings) while the JVM itself outlives us in its own session.
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that are free right now (kept bound together so they differ).

    Used by tests to run a private broker next to any developer broker on 9092/9093.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return one TCP port that is free right now."""
    return free_ports(1, host)[0]


def free_port_block(count: int, host: str = "127.0.0.1", low: int = 20000, high: int = 32000) -> int:
    """The first of ``count`` consecutive TCP ports that are free right now, below the kernel's ephemeral range
    (32768-60999 by default on Linux).

    For a process that takes consecutive ports from one base (``salepulse demo --workers N``): a base from
    :func:`free_port` is an ephemeral port, and the ones after it may be any outgoing connection's meanwhile (seen
    in a test: "port … for worker velocity-2's HTTP API is in use").

    >>> base = free_port_block(3)
    >>> 20000 <= base and base + 3 <= 32000
    True
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise OSError(f"no {count} consecutive free ports between {low} and {high}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 64 * 1024, 0))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a live (non-zombie) process; reaps it first if it is our exited child."""
    child = CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del CHILDREN[pid]
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        # Field 3 is the state; "Z" is a zombie that only waits for its (other) parent to reap it.
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_kafka_process(pid: int, main_class: str) -> bool:
    """Guard against a recycled pid: only signal processes whose command line runs ``main_class``."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # No procfs (e.g. macOS): trust the pid file.
    try:
        return main_class in cmdline.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True




def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (every thread) so far, from ``/proc``.

    >>> cpu_seconds(os.getpid()) > 0
    True
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds of ``pid`` and of each of its live child processes, by pid (Linux ``/proc``); a
    child that is gone is not counted.

    >>> os.getpid() in cpu_by_process(os.getpid())
    True
    """
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):  # gone meanwhile
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) == pid or int(fields[1]) == pid:
                found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and of its live child processes (a worker's ingest runs in one, see
    ``SALEPULSE_INGEST_PROCESS``).

    >>> tree_cpu_seconds(os.getpid()) > 0
    True
    """
    return sum(cpu_by_process(pid).values())


def children_of(pid: int) -> set[int]:
    """The pids of ``pid``'s live child processes (Linux ``/proc``)."""
    return set(cpu_by_process(pid)) - {pid}


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` on this host, or None (not found, or no ``/proc``).

    The benches use it to charge the local broker's CPU to the events it carried.

    >>> with socket.create_server(("127.0.0.1", 0)) as server:
    ...     listening_pid(server.getsockname()[1]) == os.getpid()
    True
    """
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
    return None
