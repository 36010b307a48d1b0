"""Cut a small JSON schema out of a CustomResourceDefinition, for offline manifest checks.

    python -m tools.crd_schema CRD.yaml --version v1beta1 --keep spec.predictor \\
        --drop spec.predictor.pytorch ... > deploy/schemas/inferenceservice-v1beta1.json

KServe's InferenceService CRD is 2 MB of YAML (every predictor embeds a whole PodSpec, five
times over); the repo keeps only what cvserve's manifests use. The cut:

* takes `openAPIV3Schema` of one served version and drops `status` and every `description`;
* `--drop` removes properties cvserve does not use (paths from the schema root, dotted);
* closes every object that lists its properties (`additionalProperties: false`), so a
  dropped property, or a typo such as `canaryTrafficPercentage`, fails validation like the
  API server's strict field validation would, instead of being silently pruned;
* records where it came from in `$comment`.

tests/unit/test_deploy.py validates the rendered KServe and Prometheus Operator objects against
the results in deploy/schemas/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def _strip(node: Any) -> Any:
    """Drop descriptions; close objects that list properties."""
    if isinstance(node, list):
        return [_strip(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strip(v) for k, v in node.items() if k != "description"}
    closable = "properties" in out and "additionalProperties" not in out
    if closable and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _drop(schema: dict[str, Any], path: str) -> None:
    node = schema
    *parents, leaf = path.split(".")
    for part in parents:
        node = node["properties"][part]
    node["properties"].pop(leaf, None)
    if leaf in node.get("required", []):
        node["required"].remove(leaf)


def cut(crd: dict[str, Any], version: str, drop: Sequence[str], source: str) -> dict[str, Any]:
    """The JSON schema of `crd` at `version`, cut as the module docstring says."""
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    schema = json.loads(json.dumps(versions[version]["schema"]["openAPIV3Schema"]))
    schema["properties"].pop("status", None)
    for path in drop:
        _drop(schema, path)
    schema = _strip(schema)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    return {
        "$comment": f"{kind} {group}/{version} cut from {source} by tools/crd_schema.py",
        **schema,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.crd_schema", description=__doc__)
    parser.add_argument("crd", type=Path)
    parser.add_argument("--version", required=True)
    parser.add_argument("--drop", nargs="*", default=[], help="dotted property paths")
    parser.add_argument("--source", default="", help="where the CRD came from (repo@commit)")
    args = parser.parse_args(argv)
    crd = next(d for d in yaml.safe_load_all(args.crd.read_text()) if d)
    schema = cut(crd, args.version, args.drop, args.source or str(args.crd))
    json.dump(schema, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
