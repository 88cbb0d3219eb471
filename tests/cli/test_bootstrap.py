"""`minik8s bootstrap`: the credentials directory systemd units and the compose lab start from."""
from __future__ import annotations

import stat
import subprocess
import sys

import yaml
from cryptography import x509

from apiserver.pki import COMPONENTS, read_token_file
from cli.bootstrap import Credentials, kubeconfig_name


def bootstrap(tmp_path, *extra):
    out = subprocess.run([sys.executable, "-m", "cli.main", "bootstrap", "--data-dir", str(tmp_path),
                          "--server", "https://10.1.2.3:6443", *extra], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def sans(path):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


def test_bootstrap_writes_every_identity_and_keeps_them(tmp_path):
    bootstrap(tmp_path, "--apiserver-host", "api.lab", "--kubelet-host", "10.1.2.10")
    creds = Credentials(tmp_path)
    tokens = {user: (tok, groups) for tok, user, _uid, groups in read_token_file(creds.token_file)}
    assert set(tokens) == set(COMPONENTS)
    assert tokens["admin"][1] == ["system:masters"]
    assert len({tok for tok, _ in tokens.values()}) == len(COMPONENTS)  # one distinct token each
    for identity in COMPONENTS:
        path = creds.kubeconfig(identity)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        kc = yaml.safe_load(path.read_text())
        assert kc["clusters"][0]["cluster"]["server"] == "https://10.1.2.3:6443"
        assert kc["users"][0]["user"]["token"] == tokens[identity][0]
    assert creds.kubeconfig("system:kube-scheduler").name == f"{kubeconfig_name('system:kube-scheduler')}.kubeconfig"
    assert {"10.1.2.3", "api.lab", "127.0.0.1", "kubernetes.default.svc"} <= sans(creds.cert("apiserver")[0])
    assert {"10.1.2.10", "127.0.0.1"} <= sans(creds.cert("kubelet")[0])
    assert stat.S_IMODE(creds.cert("apiserver")[1].stat().st_mode) == 0o600

    # Again, with one more node: tokens, CA and kubeconfigs are kept; the kubelet cert gains the SAN.
    ca_before = creds.ca.read_bytes()
    bootstrap(tmp_path, "--apiserver-host", "api.lab", "--kubelet-host", "10.1.2.10", "--kubelet-host", "10.1.2.11")
    again = {user: tok for tok, user, _uid, _groups in read_token_file(creds.token_file)}
    assert again == {user: tok for user, (tok, _) in tokens.items()}
    assert creds.ca.read_bytes() == ca_before
    assert {"10.1.2.10", "10.1.2.11"} <= sans(creds.cert("kubelet")[0])


def test_bootstrap_without_a_server_is_a_usage_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cli.main", "bootstrap", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--server" in out.stderr
    assert not any(tmp_path.iterdir())
