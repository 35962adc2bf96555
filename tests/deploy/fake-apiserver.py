#!/usr/bin/env python3
"""fake-apiserver.py PORT_FILE — the API discovery documents of a Kubernetes
server, and nothing else, on 127.0.0.1 (ephemeral port written to PORT_FILE).

`kubectl create --dry-run=client` needs discovery to map each manifest's
apiVersion/kind to a resource, even though it sends nothing; with this it
checks deploy/k8s/ offline: the YAML parses, every object has a known
apiVersion and kind, a name, and kubectl can build it. Schema validation
needs the server's OpenAPI document, which no Debian package ships, so the
test runs kubectl with --validate=false (tests/deploy/run.sh).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

# group/version -> [(plural, Kind, namespaced)]
RESOURCES = {
    "v1": [("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("services", "Service", True), ("persistentvolumeclaims", "PersistentVolumeClaim", True),
           ("serviceaccounts", "ServiceAccount", True), ("namespaces", "Namespace", False)],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "autoscaling/v1": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
}


def documents():
    docs = {
        "/version": {"major": "1", "minor": "29", "gitVersion": "v1.29.0"},
        "/api": {"kind": "APIVersions", "versions": ["v1"],
                 "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                 "serverAddress": "127.0.0.1:6443"}]},
    }
    groups = {}
    for gv, resources in RESOURCES.items():
        docs["/api/v1" if gv == "v1" else "/apis/" + gv] = {
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": ns,
                           "kind": kind, "verbs": VERBS} for plural, kind, ns in resources]}
        if "/" in gv:
            group, version = gv.split("/")
            groups.setdefault(group, []).append({"groupVersion": gv, "version": version})
    docs["/apis"] = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": v, "preferredVersion": v[0]} for g, v in groups.items()]}
    for g, v in groups.items():
        docs["/apis/" + g] = {"kind": "APIGroup", "apiVersion": "v1", "name": g,
                              "versions": v, "preferredVersion": v[0]}
    return docs


DOCS = documents()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        doc = DOCS.get(self.path.split("?")[0].rstrip("/") or "/")
        body = json.dumps(doc if doc else {"kind": "Status", "apiVersion": "v1",
                                           "status": "Failure", "code": 404}).encode()
        self.send_response(200 if doc else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = HTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
