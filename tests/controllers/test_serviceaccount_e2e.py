"""The `default` ServiceAccount appears in a new namespace and comes back when deleted."""
from tests.cluster import wait_for


def test_default_service_account_appears_and_is_recreated(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "sa")
        path = f"/api/v1/namespaces/{ns}/serviceaccounts/default"
        try:
            first = wait_for(lambda: http.get(path).status_code == 200 and http.get(path).json(), 30,
                             what="default ServiceAccount")
            assert http.delete(path).status_code == 200
            again = wait_for(lambda: (r := http.get(path)).status_code == 200 and r.json(), 30,
                             what="default ServiceAccount recreated")
            assert again["metadata"]["uid"] != first["metadata"]["uid"]
        finally:
            http.delete(f"/api/v1/namespaces/{ns}")
