#!/usr/bin/env python3
"""Checks monitoring.coreos.com/v1 objects against pinned CRD schemas.

    kubectl kustomize deploy/kubernetes | scripts/validate-monitoring.py SCHEMA_DIR

SCHEMA_DIR holds one JSON file per kind (tests/fixtures/prometheus-operator:
the openAPIV3Schema of Prometheus Operator's CRDs). Every document of the
input whose apiVersion is monitoring.coreos.com/v1 is validated the way the
API server would: types, required fields, enums, patterns, and unknown
fields rejected (as `kubectl apply` does with server-side field validation
strict). Other documents are ignored. Prints one line per object checked;
exits 1 on any error, 2 on an object whose kind has no schema.

Needs PyYAML and jsonschema (both come with kubernetes-validate).
"""
import json
import pathlib
import sys

import jsonschema
import yaml


def to_json_schema(node):
    """OpenAPI v3 structural schema -> JSON Schema with strict objects."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    schemas = {}
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
        data = json.loads(path.read_text())
        schemas[data["kind"]] = (data, to_json_schema(data["openAPIV3Schema"]))
    failed = False
    checked = 0
    for doc in yaml.safe_load_all(sys.stdin):
        if not doc or doc.get("apiVersion") != "monitoring.coreos.com/v1":
            continue
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        if kind not in schemas:
            print(f"ERROR {kind}/{name}: no schema for kind {kind} in {sys.argv[1]}")
            sys.exit(2)
        data, schema = schemas[kind]
        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(doc),
            key=lambda e: list(e.absolute_path),
        )
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(root)"
            print(f"ERROR {kind}/{name}: {where}: {e.message}")
            failed = True
        if not errors:
            print(f"ok {kind}/{name} (prometheus-operator {data['operatorVersion']})")
        checked += 1
    if checked == 0:
        print("ERROR no monitoring.coreos.com/v1 object in the input")
        sys.exit(1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
