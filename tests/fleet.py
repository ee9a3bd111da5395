"""A fleet of crawl instances as separate hosts, on one machine (tests and bench).

:class:`Fleet` builds a Linux bridge on a random ``10.x.y.0/24``, the root namespace
at ``10.x.y.1``, and runs there, on that address, a private redis-server, a private
PgBouncer (transaction pooling) in front of a private PostgreSQL cluster (on loopback) and the
generated latency site (:mod:`tests.fleet_site`). Each crawl instance runs in a
network namespace of its own (``ip netns``, a veth pair into the bridge, address
``10.x.y.(10 + i)``), so the test can cut one off the network with nftables rules
inside its namespace (:meth:`Fleet.cut`) and heal it again, as a partition between
hosts would. Needs root (namespaces, bridges); everything is removed on exit.

Instances are ``scrapy crawl workflow`` processes (:class:`tests.test_scheduler_distributed.CrawlProcess`
started through ``ip netns exec``) with the Redis scheduler (``REDIS_URL``) and the
PostgreSQL pipeline (``DATABASE_URL`` through PgBouncer), as docs/distributed.md and
docs/storage.md describe.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.fleet_site import FleetSite, workflow
from tests.services import PgBouncer, PrivatePostgres, TempDatabase, free_port, wait_until
from tests.test_scheduler_distributed import CrawlProcess

#: The production PgBouncer settings (docker/pgbouncer.ini: among them
#: ``server_login_retry = 1``, so a PostgreSQL restart heals within about a second).
PGBOUNCER_TEMPLATE = ROOT / "docker" / "pgbouncer.ini"


def missing_tools() -> list[str]:
    """What the fleet needs and this machine lacks (root, ip, nft, the services)."""
    missing = [] if os.geteuid() == 0 else ["root"]
    return missing + [tool for tool in ("ip", "nft", "redis-server", "pgbouncer")
                      if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Network:
    """A bridge and ``size`` namespaces attached to it; ``address(i)`` is instance i's."""

    def __init__(self, size: int) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.subnet = (random.randrange(1, 255), random.randrange(0, 255))
        self.bridge = f"wfb{self.tag}"
        self.size = size
        self.namespaces: list[str] = []

    @property
    def host(self) -> str:
        """The root namespace's address on the bridge: where the services listen."""
        return f"10.{self.subnet[0]}.{self.subnet[1]}.1"

    def address(self, i: int) -> str:
        return f"10.{self.subnet[0]}.{self.subnet[1]}.{10 + i}"

    def __enter__(self) -> Network:
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.host}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i in range(self.size):
                ns, veth = f"wf{self.tag}-{i}", f"wfv{self.tag}{i}"
                sh("ip", "netns", "add", ns)
                self.namespaces.append(ns)
                sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                sh("ip", "link", "set", veth, "master", self.bridge, "up")
                sh("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in self.namespaces:  # deleting a namespace deletes its end of the veth pair, and the pair
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", self.bridge], stderr=subprocess.DEVNULL)

    def cut(self, i: int, ports: list[int]) -> None:
        """Drop instance i's traffic to and from ``ports`` of the services' host (nftables)."""
        ports_set = "{ " + ", ".join(map(str, ports)) + " }"
        rules = (
            "table inet wfcut {\n"
            " chain out { type filter hook output priority 0; "
            f"ip daddr {self.host} tcp dport {ports_set} drop; }}\n"
            " chain in { type filter hook input priority 0; "
            f"ip saddr {self.host} tcp sport {ports_set} drop; }}\n"
            "}\n"
        )
        subprocess.run(["ip", "netns", "exec", self.namespaces[i], "nft", "-f", "-"], input=rules.encode(),
                       check=True)

    def heal(self, i: int) -> None:
        sh("ip", "netns", "exec", self.namespaces[i], "nft", "delete", "table", "inet", "wfcut")


class PrivateRedisServer:
    """redis-server on ``host``:<port>, nothing on disk; :meth:`restart` loses every key."""

    def __init__(self, host: str, directory: Path) -> None:
        self.host = host
        self.dir = directory
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port, socket_timeout=5)

    def _ping(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        except redis.exceptions.ConnectionError:
            return False

    def start(self) -> None:
        for _ in range(5):
            self.port = self.port or free_port(self.host)
            self.proc = subprocess.Popen(
                ["redis-server", "--bind", self.host, "--port", str(self.port), "--save", "", "--appendonly", "no",
                 "--dir", str(self.dir), "--maxclients", "10000", "--protected-mode", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: self.proc.poll() is not None or self._ping(), 20, "redis-server")  # type: ignore[union-attr]
            if self.proc.poll() is None:
                return
            self.port = 0  # the port was taken meanwhile
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Killed and started again on the same port: every key is gone."""
        self.stop()
        self.start()


class Fleet:
    """The network, the services, the site; :meth:`launch` starts instance i in its namespace.

    ``with Fleet(tmp_path, instances=10, products=1000) as fleet: ...``
    """

    def __init__(self, tmp: Path, *, instances: int, products: int, latency: float = 0.2, delay: float = 0,
                 concurrency: int = 2, per_list: int = 50, pg_max_connections: int = 100,
                 pool_size: int = 20) -> None:
        self.tmp = tmp
        self.size = instances
        self.network = Network(instances)
        self.site = FleetSite(self.network.host, products=products, latency=latency, per_list=per_list)
        self.workflow = tmp / "fleetshop.yaml"
        self.workflow.write_text(workflow(delay, concurrency))
        self.concurrency = concurrency
        self.redis = PrivateRedisServer(self.network.host, tmp)
        # PostgreSQL itself listens on loopback: only PgBouncer (same host) talks to it.
        self.postgres = PrivatePostgres(max_connections=pg_max_connections)
        # pg_max_connections must exceed default_pool_size + reserve_pool_size.
        self.pgbouncer_settings = {"default_pool_size": str(pool_size), "reserve_pool_size": "5",
                                   "max_client_conn": "4000"}
        self.procs: list[CrawlProcess | None] = [None] * instances
        self.execution_id = f"fleet-{self.network.tag}"

    def __enter__(self) -> Fleet:
        self.network.__enter__()
        try:
            self.redis.start()
            self.postgres.__enter__()
            self.pgbouncer = PgBouncer("127.0.0.1", self.postgres.port, host=self.network.host,
                                       template=PGBOUNCER_TEMPLATE, settings=self.pgbouncer_settings).__enter__()
            self.database = TempDatabase(self.postgres.dsn("postgres")).__enter__()
            self.dsn = self.pgbouncer.dsn(self.database.name)
            self.site.__enter__()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc is not None and proc.popen.poll() is None:
                proc.kill()
        for part in (self.site, getattr(self, "pgbouncer", None), self.postgres):
            try:
                if part is not None:
                    part.__exit__()
            except Exception:
                pass
        self.redis.stop()
        self.network.__exit__()

    def launch(self, i: int, *settings: str) -> CrawlProcess:
        """Instance i: ``scrapy crawl workflow`` in namespace i, on the fleet's Redis and PgBouncer."""
        proc = CrawlProcess(
            self.workflow, self.tmp, f"i{i}", self.site.url,
            "-s", f"DATABASE_URL={self.dsn}", "-s", f"CONCURRENT_REQUESTS={self.concurrency}",
            "-s", "TELNETCONSOLE_ENABLED=False", "-s", "WFCRAWL_EXECUTIONS_INTERVAL=1",
            *settings, redis_url=self.redis.url, execution_id=self.execution_id,
            wrap=("ip", "netns", "exec", self.network.namespaces[i]),
        )
        self.procs[i] = proc
        return proc

    def instance_of(self, client: str) -> int:
        """The instance that has address ``client``."""
        return int(client.rsplit(".", 1)[1]) - 10

    def cut(self, i: int) -> None:
        """Instance i loses Redis and PostgreSQL (PgBouncer); the site stays reachable."""
        self.network.cut(i, [self.redis.port, self.pgbouncer.port])

    def heal(self, i: int) -> None:
        self.network.heal(i)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        from tests.test_pipelines_postgres import query

        return query(self.postgres.dsn(self.database.name), sql)

    def products(self) -> list[tuple[str, str, float]]:
        """Every product row as ``(sku, name, price)`` (duplicates kept)."""
        rows = self.query("SELECT item->>'sku', item->>'name', (item->>'price')::float FROM wfcrawl.items"
                          " WHERE item_type = 'product'")
        return [(str(s), str(n), float(p)) for s, n, p in rows]

    def execution(self) -> tuple[str, str | None]:
        """The execution's ``(status, finish_reason)``."""
        [(status, reason)] = self.query(
            f"SELECT status, finish_reason FROM wfcrawl.executions WHERE id = '{self.execution_id}'")
        return str(status), reason
