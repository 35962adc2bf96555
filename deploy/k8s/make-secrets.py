#!/usr/bin/env python3
"""make-secrets.py — the Secrets the manifests mount, made once, with new keys.

Prints Secret manifests on stdout; the API keys themselves (shown once) on
stderr. Nothing is written to disk. Create them, do not apply them over
existing ones (that would replace every key):

    deploy/k8s/make-secrets.py --tenant acme | kubectl -n jobgate create -f -

* jobgate-curve-broker, -gateway, -worker: each role's CURVE key pair
  (files public_key, secret_key), made by `jobgate-broker --gen-keypair`
  (--keygen names another command printing the same JSON, e.g.
  "docker run --rm jobgate:latest jobgate-broker --gen-keypair");
* jobgate-curve-public: broker_public_key (what gateways and workers trust)
  and authorized_keys (the gateway and worker public keys, the only ones the
  broker accepts), one Z85 key per line;
* jobgate-api-keys: api_keys.json for gateway.api_keys_file, one key per
  --tenant (and --operator), stored as its SHA-256 only.

The pods mount these as files (deploy/k8s/*.yaml; security.curve.*_file and
gateway.api_keys_file in configmap.yaml). Rotating a key: make a new pair,
add its public key to authorized_keys, roll the pods, remove the old one.
"""
import argparse
import hashlib
import json
import secrets
import shlex
import subprocess
import sys

Z85_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
ROLES = ("broker", "gateway", "worker")


def keypair(keygen):
    """One key pair from the keygen command, checked to be two Z85 keys."""
    try:
        out = subprocess.run(keygen, capture_output=True, text=True, timeout=60, check=True).stdout
        pair = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        sys.exit(f"make-secrets: {shlex.join(keygen)} gave no key pair: {error}")
    for field in ("public_key", "secret_key"):
        key = pair.get(field) if isinstance(pair, dict) else None
        if not isinstance(key, str) or len(key) != 40 or not set(key) <= Z85_CHARS:
            sys.exit(f"make-secrets: {shlex.join(keygen)}: {field} is not a 40-character Z85 key")
    return pair


def secret(name, component, files):
    """A Secret manifest; values as JSON strings, which YAML reads as they are."""
    lines = [
        "---",
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        f"  name: {name}",
        f"  labels: {{ app.kubernetes.io/name: jobgate, app.kubernetes.io/component: {component} }}",
        "type: Opaque",
        "stringData:",
    ]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in files.items()]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keygen", default="jobgate-broker --gen-keypair",
                        help="command printing {\"public_key\",\"secret_key\"} (default: %(default)s)")
    parser.add_argument("--tenant", action="append", default=[],
                        help="a tenant to make an API key for (repeatable; default: default)")
    parser.add_argument("--operator", action="append", default=[],
                        help="a tenant whose key is an operator's (sees internal topology)")
    args = parser.parse_args()
    keygen = shlex.split(args.keygen)
    tenants = [(t, False) for t in (args.tenant or ([] if args.operator else ["default"]))]
    tenants += [(t, True) for t in args.operator]

    pairs = {role: keypair(keygen) for role in ROLES}
    out = []
    for role in ROLES:
        out.append(secret(f"jobgate-curve-{role}", role,
                          {"public_key": pairs[role]["public_key"] + "\n",
                           "secret_key": pairs[role]["secret_key"] + "\n"}))
    authorized = "".join(f"# {role}s\n{pairs[role]['public_key']}\n" for role in ("gateway", "worker"))
    out.append(secret("jobgate-curve-public", "broker",
                      {"broker_public_key": pairs["broker"]["public_key"] + "\n",
                       "authorized_keys": authorized}))
    entries = []
    for tenant, operator in tenants:
        key = "jg_" + secrets.token_urlsafe(32)
        entry = {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "tenant": tenant}
        if operator:
            entry["operator"] = True
        entries.append(entry)
        print(f"make-secrets: API key of tenant {tenant}{' (operator)' if operator else ''}: {key}",
              file=sys.stderr)
    out.append(secret("jobgate-api-keys", "gateway",
                      {"api_keys.json": json.dumps(entries, indent=1) + "\n"}))
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
