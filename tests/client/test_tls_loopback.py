"""kubeconfig -> TLS with our own CA -> bearer token, against a real HTTPS server on loopback."""
import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.errors import APIError
from client.kubeconfig import Config, write_kubeconfig
from client.rest import AsyncClient, Client


def _cert(subject, issuer_name, key, signing_key, *, ca, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code, body, lines=None):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        payload = b"".join(json.dumps(x).encode() + b"\n" for x in lines) if lines else json.dumps(body).encode()
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer tok":
            return self._send(401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401,
                                    "message": "Unauthorized"})
        if "watch=1" in self.path:
            return self._send(200, None, lines=[
                {"type": "ADDED", "object": {"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "5"}}},
                {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "6"}}}])
        if self.path.startswith("/api/v1/namespaces/default/pods/missing"):
            return self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                                    "message": 'pods "missing" not found', "details": {"name": "missing"}})
        self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}, "items": []})


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minik8s-ca")])
    ca = _cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apiserver")]), ca_name, key, ca_key,
                 ca=False, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    d = tmp_path_factory.mktemp("tls")
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = write_kubeconfig(d / "admin.kubeconfig", server=f"https://127.0.0.1:{server.server_address[1]}",
                                  ca_pem=ca.public_bytes(serialization.Encoding.PEM), token="tok")
    yield kubeconfig
    server.shutdown()


def test_sync_client_verifies_our_ca_and_sends_token(tls_server):
    with Client(Config.from_kubeconfig(tls_server)) as c:
        assert c.list("pods")["kind"] == "PodList"
        with pytest.raises(APIError) as e:
            c.get("pods", "missing")
        assert e.value.reason == "NotFound" and e.value.name == "missing"
        assert [(t, o["metadata"]["resourceVersion"]) for t, o in c.watch("pods")] == [("ADDED", "5"),
                                                                                      ("BOOKMARK", "6")]


async def test_async_client_and_wrong_token(tls_server):
    cfg = Config.from_kubeconfig(tls_server)
    async with AsyncClient(cfg) as c:
        assert (await c.list("pods"))["metadata"]["resourceVersion"] == "5"
    cfg.token = "wrong"
    async with AsyncClient(cfg) as c:
        with pytest.raises(APIError) as e:
            await c.list("pods")
        assert e.value.code == 401


def test_untrusted_ca_is_rejected(tls_server):
    import httpx
    cfg = Config.from_kubeconfig(tls_server)
    cfg.ca_data = None
    with Client(cfg) as c, pytest.raises(httpx.ConnectError):
        c.list("pods")
