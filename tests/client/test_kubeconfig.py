import base64
import os
import ssl

import pytest
import yaml

from client.kubeconfig import Config, KubeconfigError, write_kubeconfig

CA = b"-----BEGIN CERTIFICATE-----\nnot-a-real-cert\n-----END CERTIFICATE-----\n"


def test_write_then_load_round_trip(tmp_path):
    path = write_kubeconfig(tmp_path / "sub" / "admin.kubeconfig", server="https://127.0.0.1:6443/",
                            ca_pem=CA, token="s3cret")
    assert os.stat(path).st_mode & 0o777 == 0o600
    doc = yaml.safe_load(path.read_text())
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == CA
    cfg = Config.from_kubeconfig(path)
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.token == "s3cret"
    assert cfg.ca_data == CA
    assert cfg.headers() == {"Authorization": "Bearer s3cret"}


def test_relative_paths_resolve_against_the_kubeconfig_dir(tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    doc = {
        "current-context": "other",
        "clusters": [{"name": "c", "cluster": {"server": "https://h:1", "certificate-authority": "ca.crt",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "missing", "user": "u"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
    }
    (tmp_path / "config").write_text(yaml.safe_dump(doc))
    cfg = Config.from_kubeconfig(tmp_path / "config")
    assert cfg.ca_file == str(tmp_path / "ca.crt")
    assert cfg.bearer_token() == "from-file"
    assert cfg.insecure and cfg.namespace == "team"
    assert isinstance(cfg.ssl_context(), ssl.SSLContext)
    with pytest.raises(KubeconfigError):
        Config.from_kubeconfig(doc, context="x")


def test_direct_config_plain_http_does_not_verify():
    cfg = Config(server="http://127.0.0.1:8080", token="t")
    assert cfg.ssl_context() is False
