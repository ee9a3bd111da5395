"""Google's Pub/Sub emulator (Debian package ``google-cloud-cli-pubsub-emulator``, Java 17)
for the tests, on ports the kernel chose.

The emulator takes ``--port=0`` but then only logs "listening on 0". The ports
are read back from the kernel instead: the listening TCP sockets that the
emulator's process holds (``/proc/PID/fd`` -> socket inodes -> ``/proc/PID/net/tcp6``).
It listens on two: the public one (gRPC and HTTP, ``GET /`` answers ``Ok``) and
an internal gRPC one; the public one is the one that answers ``Ok``. Nothing is
probed for being free, so nothing can take the port between a probe and the start.

``tools/test-services.sh`` installs the package and a Java runtime.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

#: Where Google's Debian package puts it (the ``gcloud`` SDK root is /usr/lib/google-cloud-sdk).
_SCRIPT = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def emulator_script() -> Path | None:
    """``$WFCRAWL_PUBSUB_EMULATOR``, else the script beside the ``gcloud`` on PATH, else
    the Debian package's; ``None`` when none exists or no Java runtime is on PATH."""
    if os.environ.get("WFCRAWL_PUBSUB_EMULATOR"):
        candidates = [Path(os.environ["WFCRAWL_PUBSUB_EMULATOR"])]
    else:
        candidates = [Path("/usr/lib/google-cloud-sdk") / _SCRIPT]
        gcloud = shutil.which("gcloud")
        if gcloud:
            candidates.insert(0, Path(gcloud).resolve().parent.parent / _SCRIPT)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None or not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return None
    return found


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is "ADDR:PORT" in hex; state 0A is LISTEN; field 9 is the inode.
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _answers_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().strip() == b"Ok"
    except (OSError, http.client.HTTPException):
        return False  # the internal port speaks gRPC only
    finally:
        conn.close()


class PubSubEmulator:
    """``with PubSubEmulator() as e:`` then ``PUBSUB_EMULATOR_HOST=e.host`` for the clients."""

    def __init__(self, script: Path) -> None:
        self.script = script
        self.port = 0
        self.log_path = Path(tempfile.mkstemp(prefix="wfcrawl-pubsub-emulator-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> PubSubEmulator:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.script), "--host=127.0.0.1", "--port=0"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self.port = self._wait_for_port(self.proc)
        except BaseException:
            self.__exit__()  # never leave the Java process behind
            raise
        return self

    def _wait_for_port(self, proc: subprocess.Popen[bytes]) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the Pub/Sub emulator exited ({proc.returncode}): "
                                   f"{self.log_path.read_text()[-2000:]}")
            if b"Server started" in self.log_path.read_bytes():
                public = [p for p in sorted(_listening_ports(proc.pid)) if _answers_ok(p)]
                if public:
                    return public[0]
            time.sleep(0.1)
        raise RuntimeError(f"the Pub/Sub emulator did not start in 60 s: {self.log_path.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_path.unlink(missing_ok=True)


class Project:
    """A project of its own on the shared emulator (tests never see each other's
    topics), with the real Google clients. Create it with ``PUBSUB_EMULATOR_HOST``
    set (the clients read it when they are created)."""

    def __init__(self) -> None:
        from google.cloud import pubsub_v1

        self.id = f"wfcrawl-test-{uuid.uuid4().hex[:8]}"
        self.path = f"projects/{self.id}"
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def topic(self, name: str) -> str:
        return f"{self.path}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"{self.path}/subscriptions/{name}"

    def publish(self, topic: str, data: Any) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return str(self.publisher.publish(topic, raw).result(timeout=30))

    def drain(self, subscription: str) -> list[Any]:
        """Every message the subscription still holds (acked now), as ReceivedMessages."""
        out: list[Any] = []
        while True:
            # Without return_immediately (deprecated for production use, where it adds
            # latency) an empty pull waits for messages until its deadline, here 60 s.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                received = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": 100, "return_immediately": True},
                    timeout=30).received_messages
            if not received:
                return out
            self.subscriber.acknowledge(request={"subscription": subscription,
                                                 "ack_ids": [m.ack_id for m in received]})
            out.extend(received)

    def close(self) -> None:
        self.publisher.transport.close()
        self.subscriber.close()
