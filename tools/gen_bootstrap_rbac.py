#!/usr/bin/env python3
"""Writes crates/apiserver/src/bootstrap/rbac.json: the roles and bindings a Kubernetes 1.33
API server creates at its first start (its bootstrap RBAC policy, at the default feature
gates), as compact data the server turns into objects.

Input: a JSON rendering of upstream's policy (`clusterRoles`, `clusterRoleBindings`, `roles`,
`roleBindings`, each object with name, [namespace], labels, and rules / aggregationRule /
roleRef + subjects). Every object gets the label `kubernetes.io/bootstrapping: rbac-defaults`
and the annotation `rbac.authorization.kubernetes.io/autoupdate: "true"` from the server, so
only the labels beyond that one are kept here.

    python3 tools/gen_bootstrap_rbac.py policy.json > crates/apiserver/src/bootstrap/rbac.json
"""
import json
import sys

COMMON = {"kubernetes.io/bootstrapping": "rbac-defaults"}
KEEP = ("namespace", "name", "aggregationRule", "rules", "roleRef", "subjects")


def compact(obj):
    out = {k: obj[k] for k in KEEP if obj.get(k) is not None}
    extra = {k: v for k, v in (obj.get("labels") or {}).items() if COMMON.get(k) != v}
    if extra:
        out["labels"] = extra
    return out


def main():
    src = json.load(open(sys.argv[1]))
    out = sys.stdout
    out.write("{\n")
    sections = ["clusterRoles", "clusterRoleBindings", "roles", "roleBindings"]
    for i, section in enumerate(sections):
        out.write('"%s": [\n' % section)
        items = [json.dumps(compact(o), separators=(",", ":")) for o in src[section]]
        out.write(",\n".join(items))
        out.write("\n]%s\n" % ("," if i + 1 < len(sections) else ""))
    out.write("}\n")


main()
