"""Redis as a team deploys it (issue 20, point 6): ``rediss://`` against a real redis-server with TLS
(certificates made here by a throwaway CA), an ACL user with the permissions docs/distributed.md
lists, a ``requirepass`` password; neither the password nor the user in any log, status or error."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis

from rednote_crawl.state.redis.keys import Keys
from tests.conftest import TOKEN, expected_ids, scrapy_in_process

pytestmark = pytest.mark.crawl

ROOT = Path(__file__).resolve().parent.parent
KEYS = Keys("note_search")
KEYWORDS = ["海信", "Nike"]
ADMIN_PASSWORD = "admin-pw-Qx7r2Lk9"  # requirepass: the default user's
USER, PASSWORD = "team-svc-user", "acl-pw-Zt5m8Wq3"  # the ACL user the workers log in as


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a server certificate it signed, for 127.0.0.1 (EC keys: made in milliseconds)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is not installed: `apt-get install openssl`")
    folder = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test CA", cwd=folder)
    openssl("req", *ec, "-keyout", "redis.key", "-out", "redis.csr", "-subj", "/CN=127.0.0.1", cwd=folder)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="ascii")
    openssl(
        "x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "redis.crt", "-days", "1", "-extfile", "san.cnf", cwd=folder,
    )  # fmt: skip
    return Certificates(folder / "ca.crt", folder / "redis.crt", folder / "redis.key")


@dataclass
class TlsRedis:
    """redis-server speaking TLS only (no plain port) on a free loopback port, with a password."""

    port: int
    proc: subprocess.Popen[bytes]
    admin: redis.Redis

    def url(self, credentials: str) -> str:
        return f"rediss://{credentials}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.admin.close()
        self.proc.terminate()
        self.proc.wait(10)


def start_tls_redis(folder: Path, certificates: Certificates, auth_clients: str = "no") -> TlsRedis:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `apt-get install redis-server` (.ci/run does it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder.mkdir()
    cmd = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    cmd += ["--tls-cert-file", str(certificates.cert), "--tls-key-file", str(certificates.key)]
    cmd += ["--tls-ca-cert-file", str(certificates.ca), "--tls-auth-clients", auth_clients]
    cmd += ["--requirepass", ADMIN_PASSWORD, "--save", "", "--appendonly", "no", "--logfile", "redis.log"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The server's own certificate and key serve as the admin's client certificate (same CA).
    admin = redis.Redis(
        port=port, ssl=True, ssl_ca_certs=str(certificates.ca), ssl_certfile=str(certificates.cert),
        ssl_keyfile=str(certificates.key), password=ADMIN_PASSWORD, decode_responses=True,
    )  # fmt: skip
    server = TlsRedis(port, proc, admin)
    deadline = time.monotonic() + 10
    while True:
        try:
            admin.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail("redis-server with TLS did not start: " + (folder / "redis.log").read_text())
            time.sleep(0.02)
    # The ACL user exactly as docs/distributed.md gives it: what a worker, status and drain need.
    line = (ROOT / "docs" / "distributed.md").read_text(encoding="utf-8").split("ACL SETUSER crawler on >PASSWORD ")[1]
    admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", *line.split("\n", 1)[0].split())
    return server


@pytest.fixture
def tls_redis(tmp_path: Path, certificates: Certificates) -> Iterator[TlsRedis]:
    server = start_tls_redis(tmp_path / "redis-tls", certificates)
    yield server
    server.stop()


def params(certificates: Certificates, **extra: str) -> str:
    """REDIS_PARAMS as docs/distributed.md says: the CA that signed the server's certificate."""
    return orjson.dumps({"ssl_ca_certs": str(certificates.ca), **extra}).decode()


def redis_command(
    url: str, *args: str, certificates: Certificates | None, **extra: str
) -> subprocess.CompletedProcess[str]:
    settings = ["-s", f"REDIS_PARAMS={params(certificates, **extra)}"] if certificates else []
    return scrapy_in_process("redis", *args, *settings, env={"REDIS_URL": url})


def secrets_in(text: str) -> list[str]:
    return [s for s in (PASSWORD, USER, ADMIN_PASSWORD, "wrong-pw-8Hd2", TOKEN) if s in text]


def test_a_distributed_crawl_over_tls_with_an_acl_user_seeds_works_reports_and_drains(
    sandbox, crawl, tls_redis, certificates, tmp_path
):
    url = tls_redis.url(f"{USER}:{PASSWORD}")
    worker = crawl(
        sandbox,
        keywords=KEYWORDS,
        output=False,
        settings={
            "REDIS_PARAMS": params(certificates),
            "JUSTONEAPI_REDIS_HEARTBEAT": "0.25",  # as the distributed tests' workers: idleness seen at once
            "MAX_IDLE_TIME_BEFORE_CLOSE": "0.3",
            "LOG_LEVEL": "DEBUG",
        },
        env={"REDIS_URL": url},
    )
    assert worker.returncode == 0, worker.log[-3000:]
    assert f"Distributed crawl on Redis at rediss://***:***@127.0.0.1:{tls_redis.port}/0" in worker.log
    stats = tls_redis.admin.hgetall(KEYS.stats)
    assert int(stats["queries"]) == len(KEYWORDS) and int(stats.get("pages_failed", 0)) == 0

    text = redis_command(url, "status", certificates=certificates)
    assert text.returncode == 0, text.stderr
    assert f"{stats['pages_paid']} paid, 0 failed" in text.stdout and "idle:" in text.stdout
    as_json = redis_command(url, "status", "--json", certificates=certificates)
    doc = orjson.loads(as_json.stdout)
    assert doc["redis"] == f"rediss://***:***@127.0.0.1:{tls_redis.port}/0"
    assert doc["pages"]["paid"] == int(stats["pages_paid"]) and doc["idle"] is True

    notes = tmp_path / "drained.jsonl"
    drained = redis_command(url, "drain", str(notes), certificates=certificates)
    assert drained.returncode == 0, drained.stderr
    ids = [orjson.loads(line)["note_id"] for line in notes.read_bytes().splitlines()]
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(KEYWORDS)
    assert tls_redis.admin.llen(KEYS.items) == 0

    for shown in (worker.log, text.stdout, text.stderr, as_json.stdout, as_json.stderr, drained.stdout, drained.stderr):
        assert secrets_in(shown) == [], shown[-2000:]


def test_the_default_users_password_over_tls_is_masked_and_tls_needs_its_ca(sandbox, crawl, tls_redis, certificates):
    url = tls_redis.url(f":{ADMIN_PASSWORD}")
    for args in (["status"], ["status", "--json"]):
        done = redis_command(url, *args, certificates=certificates)
        assert done.returncode == 0 and f"rediss://:***@127.0.0.1:{tls_redis.port}/0" in done.stdout
        assert secrets_in(done.stdout + done.stderr) == []
    # Without the CA the server's certificate is not trusted: an error that says so, no secret in it.
    untrusted = redis_command(url, "status", "--json", certificates=None)
    assert untrusted.returncode == 1 and untrusted.stdout == ""
    assert "certificate verify failed" in untrusted.stderr and secrets_in(untrusted.stderr) == []
    worker = crawl(sandbox, keywords=KEYWORDS, output=False, env={"REDIS_URL": url})
    assert worker.returncode == 2 and "cannot reach Redis at REDIS_URL='rediss://:***@127.0.0.1" in worker.log
    assert "certificate verify failed" in worker.log and secrets_in(worker.log) == []
    assert len(sandbox.log) == 0


@pytest.mark.parametrize("credentials", [f"{USER}:wrong-pw-8Hd2", ":wrong-pw-8Hd2"])
def test_a_wrong_password_is_an_error_that_names_neither_user_nor_password(
    sandbox, crawl, tls_redis, certificates, credentials
):
    url = tls_redis.url(credentials)
    for args in (["status"], ["status", "--json"], ["drain", "x.jsonl"]):
        done = redis_command(url, *args, certificates=certificates)
        assert done.returncode == 1 and done.stdout == ""
        assert f"rediss://{'***' if credentials.startswith(USER) else ''}:***@127.0.0.1" in done.stderr
        assert secrets_in(done.stderr) == [], done.stderr
    worker = crawl(
        sandbox, keywords=KEYWORDS, output=False, settings={"REDIS_PARAMS": params(certificates)}, env={"REDIS_URL": url}
    )
    assert worker.returncode == 2 and "refused us" in worker.log and "check its user and password" in worker.log
    assert secrets_in(worker.log) == [], worker.log[-2000:]
    assert len(sandbox.log) == 0, "a worker that cannot log in to Redis sends no call"


def test_a_redis_that_asks_for_a_client_certificate_gets_the_one_in_redis_params(tmp_path, certificates):
    server = start_tls_redis(tmp_path / "redis-mtls", certificates, auth_clients="yes")
    try:
        url = server.url(f"{USER}:{PASSWORD}")
        mine = {"ssl_certfile": str(certificates.cert), "ssl_keyfile": str(certificates.key)}
        done = redis_command(url, "status", "--json", certificates=certificates, **mine)
        assert done.returncode == 0, done.stderr
        assert orjson.loads(done.stdout)["redis"] == f"rediss://***:***@127.0.0.1:{server.port}/0"
        refused = redis_command(url, "status", certificates=certificates)  # no client certificate
        assert refused.returncode == 1 and refused.stdout == "" and "Redis at rediss://***:***@" in refused.stderr
        # TLS 1.3: the server's alert, or (read after it closed) the connection's end
        assert "certificate required" in refused.stderr or "EOF occurred" in refused.stderr, refused.stderr
        assert secrets_in(done.stdout + done.stderr + refused.stderr) == []
    finally:
        server.stop()
