"""TLS for ``maasrec serve``: certificate checks before start, HTTPS on loopback with the client."""

from __future__ import annotations

import datetime as dt
import inspect
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra")
pytest.importorskip("cryptography", reason="certificates are made with the 'privacy' extra")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from maasrec import Recommender
from maasrec.cli import main as cli_main
from maasrec.client import Client, ServiceError
from maasrec.exceptions import DataError, MaasrecError
from maasrec.persistence import save_encrypted
from maasrec.privacy import KEY_ENV, generate_key
from maasrec.serving import server
from maasrec.serving.server import check_tls, run_server

API_KEY = "tls-test-key-123456"


def _key_pem(key, password: bytes | None = None) -> bytes:
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for localhost/127.0.0.1, its key, and a foreign key."""
    d = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    paths = {"cert": d / "cert.pem", "key": d / "key.pem", "other": d / "other.pem",
             "locked": d / "locked.pem", "junk": d / "junk.pem"}
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(_key_pem(key))
    paths["other"].write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    paths["locked"].write_bytes(_key_pem(key, b"s3cret-pass"))
    paths["junk"].write_text("not a certificate\n")
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def no_start(monkeypatch):
    """Fail the test if the app would be built (the model loaded) or a port bound."""

    def boom(*args, **kwargs):
        raise AssertionError("the server started despite a bad TLS/key setup")

    monkeypatch.setattr(server, "create_app", boom)
    monkeypatch.setattr(server.uvicorn, "run", boom)


def test_check_tls_accepts_the_pair(tls):
    assert check_tls(tls["cert"], tls["key"]) is not None
    assert check_tls(None, None) is None
    assert check_tls(tls["cert"], tls["locked"], "s3cret-pass") is not None


@pytest.mark.parametrize("cert,key,match", [
    ("cert", "other", "does not match the certificate"),
    ("cert", "locked", "wrong or missing password"),
    ("junk", "key", "cannot use the TLS certificate"),
    ("cert", None, "--ssl-certfile given without --ssl-keyfile"),
    (None, "key", "--ssl-keyfile given without --ssl-certfile"),
    ("missing", "key", "does not exist"),
])
def test_bad_tls_setups_fail_before_start(tls, ease_dir, no_start, cert, key, match):
    files = {**tls, "missing": "/nonexistent/cert.pem"}
    with pytest.raises(MaasrecError, match=match) as err:
        run_server(ease_dir, ssl_certfile=files.get(cert), ssl_keyfile=files.get(key))
    if cert == "missing":
        assert "/nonexistent/cert.pem" in str(err.value)


def test_cli_reports_a_mismatched_key(tls, ease_dir, no_start, capsys):
    code = cli_main(["serve", str(ease_dir), "--ssl-certfile", tls["cert"],
                     "--ssl-keyfile", tls["other"]])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not match" in err and tls["other"] in err


def test_encrypted_model_without_key_fails_before_start(tmp_path, ease_model, no_start,
                                                        monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    save_encrypted(ease_model, tmp_path / "enc", generate_key())
    with pytest.raises(MaasrecError, match="MAASREC_MODEL_KEY"):
        run_server(tmp_path / "enc")
    monkeypatch.setenv("OTHER_KEY_VAR", "")
    assert cli_main(["serve", str(tmp_path / "enc"), "--encryption-key-env",
                     "OTHER_KEY_VAR"]) == 2


def test_client_tls_options(tls):
    Client("https://127.0.0.1:1", ca_file=tls["cert"])
    Client("https://127.0.0.1:1", verify=False)
    with pytest.raises(DataError, match="does not exist"):
        Client("https://127.0.0.1:1", ca_file="/nonexistent/ca.pem")
    with pytest.raises(DataError, match="not a readable PEM"):
        Client("https://127.0.0.1:1", ca_file=tls["junk"])
    with pytest.raises(DataError, match="https"):
        Client("http://127.0.0.1:1", ca_file=tls["cert"])
    with pytest.raises(DataError, match="verify"):
        Client("https://127.0.0.1:1", verify="no")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(client: Client, proc, log, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if client.health()["status"] == "ok":
                return
        except ServiceError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"no healthy server in {timeout}s:\n{log.read_text()}")
        time.sleep(0.2)


@pytest.mark.slow
def test_https_on_loopback_with_the_client(tmp_path, tls, ease_dir, ease_model):
    """``maasrec serve`` over HTTPS; an encrypted model when load reads keys (base wiring)."""
    wired = "encryption_key" in inspect.signature(Recommender.load).parameters
    model_dir, env = ease_dir, {k: v for k, v in os.environ.items()
                                if not k.startswith("MAASREC_")}
    if wired:
        key = generate_key()
        model_dir = tmp_path / "enc"
        save_encrypted(ease_model, model_dir, key)
        env["MY_MODEL_KEY"] = key
    port = _free_port()
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "maasrec", "serve", str(model_dir), "--port", str(port),
           "--ssl-certfile", tls["cert"], "--ssl-keyfile", tls["key"], "--max-wait-ms", "1"]
    if wired:
        cmd += ["--encryption-key-env", "MY_MODEL_KEY"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**env, "MAASREC_API_KEYS": API_KEY})
    try:
        client = Client(f"https://127.0.0.1:{port}", api_key=API_KEY, ca_file=tls["cert"],
                        retries=0, timeout=10)
        _wait_healthy(client, proc, log)
        ids, _ = ease_model.recommend([2, 3], k=5)
        assert [r.items for r in client.recommend([2, 3], k=5)] == ids.tolist()
        by_name = Client(f"https://localhost:{port}", api_key=API_KEY, ca_file=tls["cert"],
                         retries=0)
        assert by_name.recommend(2, k=5).items == ids[0].tolist()
        client.close()
        by_name.close()
        with pytest.raises(ServiceError, match="not trusted"):
            Client(f"https://127.0.0.1:{port}", api_key=API_KEY, retries=0).health()
        with pytest.raises(ServiceError):  # plain HTTP to the TLS port
            Client(f"http://127.0.0.1:{port}", api_key=API_KEY, retries=0).health()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
