#!/bin/sh
# setup.sh — what tests/k8s/run.sh needs: Node.js and npm and the schema
# packages pinned in package-lock.json (kubernetes-models: the Kubernetes
# API's JSON schemas, compiled for ajv; yaml: a YAML parser, used with
# YAML 1.1 rules as Kubernetes reads manifests),
# through tests/npm-setup.sh. After this, nothing is fetched: validation is
# offline.
exec "$(dirname "$0")/../npm-setup.sh" "$(dirname "$0")" kubernetes-models
