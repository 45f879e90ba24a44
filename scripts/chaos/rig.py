"""The chaos run's own world: private Redis and RabbitMQ, a PostgreSQL proxy, the sandbox, and the
Procfile's processes under a small supervisor that can SIGKILL and restart any of them.

Nothing here touches the shared engines other engineers use: Redis and RabbitMQ are fresh
``redis-server`` and RabbitMQ nodes (own node name, ports, epmd and data directory under the run's
temporary directory); PostgreSQL is the shared server, but the run has its own database and every
product process reaches it through ``scripts.chaos.proxy``, so dropping connections drops only
ours. Everything is started in its own session and stopped by process group id.

One instance serves both providers (DESIGN decisions 16 and 26): AirTM is configured whatever
``PAYMENT_PROVIDER`` says, the treasury pool is created by ``bootstrap``, and ``Rig.switch`` restarts every
product process with the other provider on the same database, ledger and AirTM, as an operator does it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench.common import ROOT, Instance, clean_environ, create_database, drop_database, local_database_url
from scripts.ports import free_port

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def say(message: str) -> None:
    print(f"[chaos] {message}", file=sys.stderr, flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, seconds: float, what: str, child: Supervised | None = None) -> float:
    """Seconds until ``port`` accepts connections; raises when it does not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if port_open(port):
            return time.monotonic() - started
        if child is not None and not child.alive:
            raise RuntimeError(f"{what} exited with {child.process and child.process.returncode}:\n{child.tail()}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port} within {seconds:.0f} s")


@dataclass
class Supervised:
    """One process (group) the run owns: started in its own session, killed by group id, restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts + 1} at {time.strftime('%H:%M:%S')} ===\n".encode())
            out.flush()
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1

    def send(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self, signum: int = signal.SIGKILL, wait: float = 30) -> None:
        """Signal the whole group (dramatiq forks workers) and wait; SIGKILL when a gentler signal is ignored."""
        if self.process is None:
            return
        self.send(signum)
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.process.wait(timeout=10)
        # children that outlived their parent are still in the group: none may survive a kill
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.kills += 1

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Redis:
    """A private ``redis-server`` (no persistence: a restart loses every key, as a real crash would)."""

    port: int
    child: Supervised

    @classmethod
    def create(cls, directory: Path) -> Redis:
        port = free_port()
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(directory), "--protected-mode", "no"]
        return cls(port, Supervised("redis", argv, dict(os.environ), directory / "redis.log"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> float:
        self.child.start()
        return wait_port(self.port, 30, "redis-server", self.child)

    def restart(self) -> float:
        self.child.kill(signal.SIGKILL)
        return self.start()


@dataclass
class RabbitMQ:
    """A private RabbitMQ node: its own node name, AMQP and distribution ports, epmd and Mnesia directory.

    Durable queues and persistent messages survive a restart (the Mnesia directory is kept), as on a
    real broker restart; messages in flight and unacknowledged deliveries are redelivered.
    """

    port: int
    node: Supervised
    epmd: Supervised
    directory: Path

    @classmethod
    def create(cls, directory: Path, run: str) -> RabbitMQ:
        if not RABBITMQ_SERVER.exists():
            raise RuntimeError(f"{RABBITMQ_SERVER} not found: apt-get install rabbitmq-server")
        directory.mkdir(parents=True, exist_ok=True)
        port, dist, epmd_port = free_port(), free_port(), free_port()
        (directory / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n")
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq-env.conf").write_text("")
        (directory / ".erlang.cookie").write_text(secrets.token_hex(16))
        (directory / ".erlang.cookie").chmod(0o400)
        env = {**os.environ, "HOME": str(directory), "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
               "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
               "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
               "RABBITMQ_NODENAME": f"chaos{run}@localhost", "RABBITMQ_DIST_PORT": str(dist),
               "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"), "RABBITMQ_LOG_BASE": str(directory / "log"),
               "RABBITMQ_PID_FILE": str(directory / "rabbit.pid")}
        erts = sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))
        epmd_binary = shutil.which("epmd") or (str(erts[-1]) if erts else "epmd")
        epmd = Supervised("epmd", [str(epmd_binary), "-port", str(epmd_port), "-address", "127.0.0.1"], env,
                          directory / "epmd.log")
        node = Supervised("rabbitmq", [str(RABBITMQ_SERVER)], env, directory / "rabbitmq.log")
        return cls(port, node, epmd, directory)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> float:
        """Seconds until the node accepts AMQP connections (about 5 s on an idle 2-core machine)."""
        started = time.monotonic()
        if not self.epmd.alive:
            self.epmd.start()
        self.node.start()
        wait_port(self.port, 120, "the private RabbitMQ node", self.node)
        self.wait_amqp(60)
        return time.monotonic() - started

    def wait_amqp(self, seconds: float) -> None:
        import pika

        deadline = time.monotonic() + seconds
        while True:
            try:
                pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1")).close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def restart(self, hard: bool) -> float:
        """SIGKILL (a crash) or SIGTERM (an orderly stop), then start again."""
        self.node.kill(signal.SIGKILL if hard else signal.SIGTERM, wait=60)
        return self.start()

    def stop(self) -> None:
        self.node.kill(signal.SIGTERM, wait=30)
        self.epmd.kill(signal.SIGKILL)


@dataclass
class PgProxy:
    port: int
    child: Supervised
    drops: int = 0

    @classmethod
    def start(cls, directory: Path, env: dict[str, str]) -> PgProxy:
        log = directory / "pgproxy.log"
        child = Supervised("pgproxy", [sys.executable, "-m", "scripts.chaos.proxy", "--target",
                                       "127.0.0.1:5432"], env, log)
        child.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"^PROXY_READY (\d+)", log.read_text(errors="replace"), re.MULTILINE)
            if found:
                return cls(int(found.group(1)), child)
            if not child.alive:
                raise RuntimeError(f"the PostgreSQL proxy exited:\n{child.tail()}")
            time.sleep(0.05)
        raise RuntimeError("the PostgreSQL proxy did not start")

    def drop(self) -> None:
        self.child.send(signal.SIGUSR1)
        self.drops += 1


def procfile_commands(path: Path) -> dict[str, list[str]]:
    """The Procfile's ``name: command`` lines, each run by ``sh -c`` as honcho does (``${VAR:-default}``
    and leading ``NAME=value`` assignments are the shell's business); killed as a process group."""
    commands: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, command = line.split(":", 1)
        commands[name.strip()] = ["/bin/sh", "-c", command.strip()]
    return commands


@dataclass
class Switch:
    """One provider switch: every product process restarted with ``provider``, from ``started`` to ``ended``
    (``time.monotonic()``)."""

    provider: str
    started: float
    ended: float = 0.0


@dataclass
class Rig(Instance):
    """Everything one chaos run started; ``env`` is what the product's processes see."""

    run: str
    directory: Path
    database: str
    redis: Redis
    rabbitmq: RabbitMQ
    proxy: PgProxy
    sandbox: Supervised
    sandbox_url: str
    env: dict[str, str]
    processes: dict[str, Supervised] = field(default_factory=dict)
    startup_seconds: dict[str, float] = field(default_factory=dict)
    airtm: bool = False  # AirTM configured (top-ups, payouts, AIRTM-backed users) whatever the mode
    switches: list[Switch] = field(default_factory=list)
    #: Held while processes are stopped or started as a group (a switch), so a kill never restarts one
    #: with the provider of before.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def provider(self) -> str:
        return self.env["PAYMENT_PROVIDER"]

    @property
    def direct_database_url(self) -> str:
        """PostgreSQL itself (not through the proxy): for the driver's reads and the final checks."""
        return local_database_url(self.database)

    def restart(self, name: str, signum: int = signal.SIGKILL, pause: float = 0.0) -> None:
        """Kill one product process and start it again after ``pause`` seconds (never across a switch)."""
        with self.lock:
            child = self.processes[name]
            child.kill(signum)
            time.sleep(pause)
            child.start()

    def switch(self, provider: str) -> Switch:
        """Restart every product process with ``PAYMENT_PROVIDER=provider``, as an operator does: each is
        stopped (SIGTERM, SIGKILL after 30 s), then all start again with the new environment. Work in flight
        is whatever the stop left: the product must finish it in the other mode."""
        switch = Switch(provider, time.monotonic())
        with self.lock:
            self.env["PAYMENT_PROVIDER"] = provider
            for child in self.processes.values():
                child.send(signal.SIGTERM)
            for child in self.processes.values():
                child.kill(signal.SIGTERM)
                child.env = self.env
            # the old web's socket closes only when its process is gone: the new one must be the one answering
            deadline = time.monotonic() + 30
            while port_open(int(self.env["PORT"])) and time.monotonic() < deadline:
                time.sleep(0.1)
            for child in self.processes.values():
                child.start()
            # under the lock: no kill may take web down while the switch waits for it
            wait_port(int(self.env["PORT"]), 120, "web after the switch", self.processes.get("web"))
        switch.ended = time.monotonic()
        self.switches.append(switch)
        return switch

    def revive(self) -> list[str]:
        """Start again any process that died on its own, or a service whose restart failed (each is
        reported, not hidden)."""
        with self.lock:
            died = [name for name, child in self.processes.items() if not child.alive]
            for name in died:
                self.processes[name].start()
        if not self.redis.child.alive:
            died.append("redis")
            self.redis.start()
        if not self.rabbitmq.node.alive:
            died.append("rabbitmq")
            self.rabbitmq.start()
        return died


def start_sandbox(directory: Path, seed: str) -> tuple[Supervised, str]:
    env = {**clean_environ(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "SANDBOX_SEED": seed,
           "SANDBOX_TW_REQUESTS_PER_MINUTE": "0", "SANDBOX_AIRTM_REQUESTS_PER_SECOND": "0",
           "TRUSTLESS_API_KEY": "sandbox-tw-key", "SANDBOX_LEDGER_MODE": "instant"}
    child = Supervised("sandbox", [sys.executable, "-m", "scripts.sandbox", "--port", "0"], env,
                       directory / "sandbox.log")
    child.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"^SANDBOX_READY (\S+)", child.log.read_text(errors="replace"), re.MULTILINE)
        if found:
            return child, found.group(1).rstrip("/")
        if not child.alive:
            raise RuntimeError(f"the sandbox exited:\n{child.tail()}")
        time.sleep(0.05)
    raise RuntimeError("the sandbox did not print SANDBOX_READY within 60 s")


def prepare_database(env: dict[str, str]) -> None:
    """``python -m orchestrator bootstrap`` (schema, platform user and wallet) for one instance."""
    for what, command in (("bootstrap", [sys.executable, "-m", "orchestrator", "bootstrap"]),):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def airtm_environment(sandbox_url: str, port: int) -> dict[str, str]:
    """AirTM configured on the instance in either mode (a user's money follows its own backing, decision 26):
    credentials, the sandbox's webhook secret, a quick refresh, the top-up redirects, and the pool's settings."""
    import requests

    secret = requests.get(f"{sandbox_url}/_sandbox/airtm/config", timeout=30).json()["webhookSecret"]
    return {"AIRTM_API_KEY": "sandbox-airtm-key", "AIRTM_API_SECRET": "sandbox-airtm-secret",
            "AIRTM_WEBHOOK_SECRET": secret, "AIRTM_REFRESH_SECONDS": "10", "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "TOPUP_SUCCESS_REDIRECT_URL": "https://marketplace.example/topup/done",
            "TOPUP_CANCEL_REDIRECT_URL": "https://marketplace.example/topup/canceled",
            # the settlement sweep every few seconds, so releases come back to the pool while the run goes on
            "SETTLEMENT_SWEEP_SECONDS": "5", "TREASURY_WATCH_SECONDS": "5"}


@contextlib.contextmanager
def rig(*, keep_logs: bool = False, procfile: Path = ROOT / "Procfile", airtm: bool = True,
        extra_env: dict[str, str] | None = None) -> Iterator[Rig]:
    """Start everything (private services, proxy, sandbox, database, the Procfile in crypto mode, AirTM
    configured unless ``airtm`` is false); stop and remove it all."""
    run = secrets.token_hex(4)
    directory = Path(tempfile.mkdtemp(prefix=f"offerhub-chaos-{run}-"))
    database = f"offerhub_chaos_{run}"
    started: list[Supervised] = []
    rabbitmq: RabbitMQ | None = None
    database_created = False
    failed = False
    the_rig: Rig | None = None
    try:
        redis = Redis.create(directory)
        took_redis = redis.start()
        started.append(redis.child)
        rabbitmq = RabbitMQ.create(directory / "rabbitmq", run)
        say(f"starting a private RabbitMQ node on port {rabbitmq.port} and Redis on {redis.port}")
        took_rabbit = rabbitmq.start()
        seed = f"chaos-{run}"
        sandbox, sandbox_url = start_sandbox(directory, seed)
        started.append(sandbox)
        create_database(database)
        database_created = True
        base_env = {**clean_environ(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        proxy = PgProxy.start(directory, base_env)
        started.append(proxy.child)
        port = free_port()
        env = {
            **base_env, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}",
            "REDIS_URL": redis.url, "RABBITMQ_URL": rabbitmq.url, "PORT": str(port),
            "OFFERHUB_MASTER_KEY": f"chaos-master-{secrets.token_hex(16)}", "STELLAR_NETWORK": "sandbox",
            "SANDBOX_URL": sandbox_url, "SANDBOX_SEED": seed, "SANDBOX_LEDGER_MODE": "instant",
            "WALLET_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "RATE_LIMIT_PER_MINUTE": "0", "TRUSTLESS_REQUESTS_PER_MINUTE": "0", "TRUSTLESS_API_KEY": "sandbox-tw-key",
            "QUEUE_PREFIX": f"chaos{run}_", "REDIS_PREFIX": f"offerhub-chaos-{run}:", "LOG_LEVEL": "INFO",
            "TMPDIR": str(directory), "WEB_METRICS_DIR": str(directory / "web-metrics"),
            "WORKER_METRICS_PORT": str(free_port()), "CHAIN_METRICS_PORT": str(free_port()),
            "WEBHOOKS_METRICS_PORT": str(free_port()), "PAYMENT_PROVIDER": "crypto",
            **(airtm_environment(sandbox_url, port) if airtm else {}),
            **(extra_env or {}),
        }
        the_rig = Rig(run, directory, database, redis, rabbitmq, proxy, sandbox, sandbox_url, env,
                      startup_seconds={"redis": took_redis, "rabbitmq": took_rabbit}, airtm=airtm)
        say("migrating the run's database and bootstrapping the platform user and the treasury pool")
        prepare_database(env)
        commands = procfile_commands(procfile)
        for name, argv in commands.items():
            child = Supervised(name, argv, env, directory / f"{name}.log")
            child.start()
            the_rig.processes[name] = child
        if airtm:
            import requests

            requests.post(f"{sandbox_url}/_sandbox/airtm/config", timeout=30,
                          json={"webhookUrl": f"{the_rig.api}/webhooks/airtm"}).raise_for_status()
        yield the_rig
    except BaseException:
        failed = True
        raise
    finally:
        say("stopping everything this run started")
        if the_rig is not None:
            for child in the_rig.processes.values():
                child.kill(signal.SIGKILL)
        for child in reversed(started):
            child.kill(signal.SIGKILL)
        if rabbitmq is not None:
            rabbitmq.stop()
        if database_created:
            try:
                drop_database(database)
            except Exception as error:  # cleanup goes on
                say(f"could not drop {database}: {error}")
        if keep_logs or failed:
            say(f"logs kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
