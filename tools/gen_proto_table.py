#!/usr/bin/env python3
"""Generates crates/apiserver/src/proto_fields.txt, the field table that
crates/apiserver/src/protobuf.rs uses to decode Kubernetes protobuf request bodies.

Usage (from the workspace root):

    python3 tools/gen_proto_table.py > crates/apiserver/src/proto_fields.txt

Inputs (all local, stdlib only):

- the k8s-pb crate in the cargo registry (~/.cargo/registry/src/*/k8s-pb-0.9.0/src):
  message names, field numbers, wire kinds, cardinalities and referenced messages;
- a kubectl binary (the first `kubectl` on PATH, or --kubectl PATH): the Go struct tags and
  field types of the API types it was built with, read from the Go type metadata in the
  binary. They give each field's JSON name and how Go encodes it: the Kubernetes protobuf
  encoder writes every non-pointer field, also when it is zero, while the JSON encoder leaves
  zero `omitempty` fields out, so the decoder needs to know which zero scalars to drop;
- the k8s-openapi crate in the cargo registry (~/.cargo/registry/src/*/k8s-openapi-0.29.0):
  JSON names of the fields the kubectl binary does not know (newer than it).

Run `cargo fetch` first if the crates are not in the registry. The kubectl binary must be a
statically linked, non-PIE Go executable (the official builds are).

Output: one line per field,

    <message> <tag> <proto name> <json name> <kind> <cardinality> <presence> [<ref>]

- message: OpenAPI name of the message (io.k8s.api.core.v1.ConfigMap);
- kind: string, bytes, bool, int32, int64, double or message;
- cardinality: optional, repeated or map;
- presence: omitempty (Go value field with omitempty: a zero scalar means unset and is left
  out of the JSON), ptr (Go pointer), plain (Go value field without omitempty), inline (Go
  embedded struct whose fields appear in the parent's JSON), skip (json:"-"), or new (not in
  the kubectl binary: treated like ptr);
- ref: for kind message, the OpenAPI name of the referenced message; for maps,
  map:<key kind>,<value kind or message name>.
"""

import argparse
import array
import glob
import os
import re
import shutil
import struct
import sys

# k8s-pb module directories (relative to its src/) of the packages the server reads.
PACKAGES = [
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/events/v1",
    "api/storage/v1",
    "api/policy/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/admissionregistration/v1",
    "api/authentication/v1",
    "api/authorization/v1",
    "api/certificates/v1",
    "api/flowcontrol/v1",
    "api/networking/v1",
    "api/node/v1",
    "api/rbac/v1",
    "api/scheduling/v1",
    "apiextensions_apiserver/pkg/apis/apiextensions/v1",
    "kube_aggregator/pkg/apis/apiregistration/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime",
]

SCALARS = {"string", "bytes", "bool", "int32", "int64", "double"}


def registry_dir(crate):
    pattern = os.path.expanduser(f"~/.cargo/registry/src/*/{crate}")
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"gen_proto_table: {crate} not found in the cargo registry (run `cargo fetch`)")
    return found[-1]


# ---------------------------------------------------------------------------------------------
# k8s-pb


def openapi_name(module, name):
    """['api', 'core', 'v1'], 'ConfigMap' -> io.k8s.api.core.v1.ConfigMap; the crates of the
    extension API servers are spelled with hyphens (io.k8s.apiextensions-apiserver...)."""
    module = [m.replace("_", "-") if i == 0 else m for i, m in enumerate(module)]
    return ".".join(["io", "k8s"] + module + [name])


def resolve_rust_path(module, path):
    """Resolves a prost type path (super::...::meta::v1::Time or Foo) relative to `module`."""
    parts = [p for p in path.strip().split("::") if p]
    current = list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        current.pop()
    if parts and parts[0] == "crate":
        parts.pop(0)
        current = []
    return openapi_name(current + parts[:-1], parts[-1])


def generic_args(text, wrapper):
    """The top-level generic arguments of the first `wrapper<...>` in text."""
    start = text.index(wrapper + "<") + len(wrapper) + 1
    depth, args, current = 0, [], ""
    for ch in text[start:]:
        if ch == "<":
            depth += 1
        elif ch == ">":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        args.append(current.strip())
    return args


def strip_wrappers(rust_type):
    for wrapper in ("::core::option::Option", "::prost::alloc::vec::Vec", "::prost::alloc::boxed::Box"):
        if rust_type.startswith(wrapper + "<"):
            return strip_wrappers(generic_args(rust_type, wrapper)[0])
    return rust_type


ATTR = re.compile(r'^\s*#\[prost\((.*)\)\]\s*$')
STRUCT = re.compile(r'^pub struct (\w+) \{')
FIELD = re.compile(r'^\s*pub (?:r#)?(\w+):\s*(.*),\s*$', re.S)


def parse_attr(attr):
    """prost attribute text -> (kind, cardinality, map spec or None, tag)."""
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    m = re.match(r'btree_map = "(\w+), (\w+)"', attr) or re.match(r'map = "(\w+), (\w+)"', attr)
    if m:
        return "map", "map", (m.group(1), m.group(2)), tag
    first = attr.split(",")[0].strip()
    if first.startswith("bytes"):
        kind = "bytes"
    else:
        kind = first
    if kind not in SCALARS and kind != "message":
        sys.exit(f"gen_proto_table: unsupported prost field kind in `{attr}`")
    if re.search(r'\brepeated\b', attr):
        card = "repeated"
    elif re.search(r'\b(optional|required)\b', attr):
        card = "optional"
    else:
        sys.exit(f"gen_proto_table: no cardinality in `{attr}`")
    return kind, card, None, tag


def parse_k8s_pb(src):
    """{message: [field dict]} for every message in PACKAGES."""
    messages = {}
    for package in PACKAGES:
        module = package.split("/")
        path = os.path.join(src, package, "mod.rs")
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        current = None
        i = 0
        while i < len(lines):
            line = lines[i]
            m = STRUCT.match(line)
            if m:
                current = openapi_name(module, m.group(1))
                messages[current] = []
                i += 1
                continue
            if line == "}":
                current = None
            m = ATTR.match(line)
            if m and current is not None:
                kind, card, mapspec, tag = parse_attr(m.group(1))
                # The declaration may span several lines; it ends with `,` at depth 0.
                decl = ""
                i += 1
                while True:
                    decl += lines[i].strip() + " "
                    depth = decl.count("<") - decl.count(">")
                    if depth == 0 and decl.rstrip().endswith(","):
                        break
                    i += 1
                decl = decl.replace("< ", "<").replace(" >", ">").replace(":: ", "::")
                fm = FIELD.match(decl.strip())
                if not fm:
                    sys.exit(f"gen_proto_table: cannot parse field declaration `{decl}` in {current}")
                name, rust_type = fm.group(1), fm.group(2)
                field = {"tag": tag, "name": name, "kind": kind, "card": card, "ref": None}
                if mapspec:
                    key, value = mapspec
                    if value == "message":
                        value_type = generic_args(rust_type, "BTreeMap")[1]
                        value = resolve_rust_path(module, value_type)
                    field["kind"] = "message" if mapspec[1] == "message" else mapspec[1]
                    field["ref"] = f"map:{key},{value}"
                elif kind == "message":
                    field["ref"] = resolve_rust_path(module, strip_wrappers(rust_type))
                messages[current].append(field)
            i += 1
    return messages


# ---------------------------------------------------------------------------------------------
# Go type metadata of a kubectl binary (Go >= 1.21 ABI, 64-bit little-endian, non-PIE)

GO_KIND_POINTER = 22
GO_KIND_STRUCT = 25


class GoBinary:
    def __init__(self, path):
        with open(path, "rb") as fh:
            data = fh.read()
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            sys.exit(f"gen_proto_table: {path} is not a 64-bit little-endian ELF file")
        if struct.unpack_from("<H", data, 0x10)[0] != 2:
            sys.exit(f"gen_proto_table: {path} is not a non-PIE executable")
        shoff = struct.unpack_from("<Q", data, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        sections = []
        for i in range(shnum):
            sections.append(struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize))
        strtab_off = sections[shstrndx][4]
        rodata = None
        for name_off, _typ, _flags, addr, off, size in sections:
            end = data.index(b"\0", strtab_off + name_off)
            if data[strtab_off + name_off:end] == b".rodata":
                rodata = (addr, off, size)
        if rodata is None:
            sys.exit(f"gen_proto_table: {path} has no .rodata section")
        self.base, off, size = rodata
        self.data = data[off:off + size]
        self.words = array.array("Q", self.data[: size // 8 * 8])

    def read(self, addr, n):
        o = addr - self.base
        if o < 0 or o + n > len(self.data):
            return None
        return self.data[o:o + n]

    @staticmethod
    def varint(b, i):
        v, s = 0, 0
        while True:
            c = b[i]
            i += 1
            v |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return v, i

    def name_at(self, addr):
        """Decodes an abi.Name: (flags, name, tag)."""
        o = addr - self.base
        b = self.data
        flags = b[o]
        n, i = self.varint(b, o + 1)
        name = b[i:i + n].decode("latin1")
        i += n
        tag = ""
        if flags & 2:
            t, i = self.varint(b, i)
            tag = b[i:i + t].decode("latin1")
        return flags, name, tag

    def tagged_name_blobs(self):
        """Addresses of the abi.Names carrying a struct tag with a protobuf key."""
        blobs = set()
        b = self.data
        for m in re.finditer(rb'json:"[^"]*"[^\x00-\x1f]*?protobuf:"', b):
            t = m.start()
            p = t - 2 if b[t - 2] >= 0x80 else t - 1  # start of the tag length varint
            for n in range(1, 128):
                q = p - n - 1
                if q < 1:
                    break
                if b[q] == n and (b[q - 1] & 2) and all(
                        chr(c).isalnum() or c == 0x5F for c in b[q + 1:p]):
                    blobs.add(self.base + q - 1)
                    break
        return blobs

    def struct_fields(self):
        """{(package path, struct name): [(field name, tag, go kind, embedded)]} of every struct
        type with a protobuf-tagged field."""
        blobs = self.tagged_name_blobs()
        lo, hi = self.base, self.base + len(self.data)
        refs, pointers = {}, {}
        for i, w in enumerate(self.words):
            if lo <= w < hi:
                addr = self.base + i * 8
                pointers.setdefault(w, []).append(addr)
                if w in blobs:
                    refs.setdefault(w, []).append(addr)
        structs = {}
        seen = set()
        for sites in refs.values():
            for site in sites:
                found = self.owning_struct(site, pointers)
                if found is None or found[0] in seen:
                    continue
                stype, fields_at, count = found
                seen.add(stype)
                key = self.type_name(stype)
                fields = []
                for k in range(count):
                    name_ptr, typ = struct.unpack("<QQ", self.read(fields_at + 24 * k, 16))
                    flags, name, tag = self.name_at(name_ptr)
                    kind = self.read(typ + 23, 1)[0] & 0x1F
                    fields.append((name, tag, kind, bool(flags & 8)))
                structs[key] = fields
        return structs

    def owning_struct(self, site, pointers):
        """The abi.StructType whose field array contains the StructField at `site`."""
        for k in range(0, 256):
            start = site - 24 * k
            for p in pointers.get(start, ()):
                stype = p - 56  # Type (48 bytes) + PkgPath (8), then Fields
                b = self.read(stype, 80)
                if b is None or b[23] & 0x1F != GO_KIND_STRUCT:
                    continue
                n, c = struct.unpack_from("<QQ", b, 64)
                if k < n == c:
                    return stype, start, n
        return None

    def type_name(self, stype):
        b = self.read(stype, 48)
        tflag = b[20]
        off = struct.unpack_from("<i", b, 40)[0]
        name = self.name_at(self.base + off)[1]
        if tflag & 2:  # TFlagExtraStar
            name = name[1:]
        package = ""
        if tflag & 1:  # TFlagUncommon: abi.UncommonType follows the StructType (80 bytes)
            poff = struct.unpack_from("<i", self.read(stype + 80, 4), 0)[0]
            if poff:
                package = self.name_at(self.base + poff)[1]
        return package, name.split(".", 1)[-1]


def go_fields(binary):
    """{(go package, struct): {proto tag: (json name, presence)}}."""
    out = {}
    for key, fields in GoBinary(binary).struct_fields().items():
        by_tag = {}
        for _name, tag, kind, _embedded in fields:
            pm = re.search(r'protobuf:"[a-z0-9]+,(\d+),', tag)
            jm = re.search(r'json:"([^"]*)"', tag)
            if not pm or not jm:
                continue
            json_name, _, options = jm.group(1).partition(",")
            options = options.split(",")
            if json_name == "-":
                presence = "skip"
            elif json_name == "" and "inline" in options:
                presence = "inline"
            elif kind == GO_KIND_POINTER:
                presence = "ptr"
            elif "omitempty" in options:
                presence = "omitempty"
            else:
                presence = "plain"
            by_tag[int(pm.group(1))] = (json_name or "-", presence)
        if by_tag:
            out[key] = by_tag
    return out


def go_key(message):
    """io.k8s.api.core.v1.Pod -> ('k8s.io/api/core/v1', 'Pod')"""
    parts = message.split(".")
    return "k8s.io/" + "/".join(parts[2:-1]), parts[-1]


# ---------------------------------------------------------------------------------------------
# k8s-openapi (JSON names of fields newer than the kubectl binary)


def openapi_json_names(src):
    """{OpenAPI name: [JSON field names]} over every Kubernetes version k8s-openapi has (the
    newest version wins)."""
    names = {}
    versions = sorted(glob.glob(os.path.join(src, "v1_*")), key=lambda d: int(d.rsplit("_", 1)[1]))
    for version in versions:
        for path in glob.glob(os.path.join(version, "**", "*.rs"), recursive=True):
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            schema = re.search(r'fn schema_name\(\)[^{]*\{\s*"([\w.-]+)"\.into\(\)', text)
            if schema:
                names[schema.group(1)] = re.findall(r'"([^"]+)" => Field::Key_', text)
    return names


def canonical_names(messages, openapi, go):
    """Renames the messages to their Kubernetes names: prost upper-camel-cases message names
    (HttpGetAction for HTTPGetAction), so each is looked up case-insensitively among the
    OpenAPI names and the Go struct names."""
    known = {}
    for package, name in go:
        if package.startswith("k8s.io/"):
            full = "io.k8s." + package[len("k8s.io/"):].replace("/", ".") + "." + name
            known[full.lower()] = full
    for full in openapi:
        known[full.lower()] = full

    def fix(name):
        return known.get(name.lower(), name)

    renamed = {}
    for message, fields in messages.items():
        for field in fields:
            ref = field["ref"]
            if ref and ref.startswith("map:"):
                key, value = ref[len("map:"):].split(",")
                field["ref"] = f"map:{key},{fix(value)}"
            elif ref:
                field["ref"] = fix(ref)
        renamed[fix(message)] = fields
    return renamed


def lower_camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalize(name):
    return name.replace("_", "").lower()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubectl", help="kubectl binary to read the Go struct tags from")
    args = parser.parse_args()
    kubectl = args.kubectl or shutil.which("kubectl")
    if not kubectl:
        sys.exit("gen_proto_table: no kubectl binary (pass --kubectl PATH)")
    kubectl = os.path.realpath(kubectl)

    messages = parse_k8s_pb(os.path.join(registry_dir("k8s-pb-0.9.0"), "src"))
    go = go_fields(kubectl)
    openapi = openapi_json_names(os.path.join(registry_dir("k8s-openapi-0.29.0"), "src"))
    messages = canonical_names(messages, openapi, go)

    lines = []
    new_fields = []
    for message in sorted(messages):
        go_struct = go.get(go_key(message), {})
        for field in sorted(messages[message], key=lambda f: f["tag"]):
            info = go_struct.get(field["tag"])
            if info is None:
                candidates = [n for n in openapi.get(message, []) if normalize(n) == normalize(field["name"])]
                json_name = candidates[0] if candidates else lower_camel(field["name"])
                info = (json_name, "new")
                new_fields.append(f"{message}.{field['name']}" + ("" if candidates else " (no JSON name)"))
            json_name, presence = info
            line = [message, str(field["tag"]), field["name"], json_name, field["kind"], field["card"], presence]
            if field["ref"]:
                line.append(field["ref"])
            lines.append(" ".join(line))

    out = sys.stdout
    out.write("# Kubernetes protobuf field table, read by crates/apiserver/src/protobuf.rs.\n")
    out.write("# Generated by tools/gen_proto_table.py (see its docstring for the columns); regenerate with\n")
    out.write("#   python3 tools/gen_proto_table.py > crates/apiserver/src/proto_fields.txt\n")
    out.write("# message tag proto_name json_name kind cardinality presence [ref | map:key,value]\n")
    for line in lines:
        out.write(line + "\n")
    for field in new_fields:
        print(f"gen_proto_table: not in the kubectl binary: {field}", file=sys.stderr)
    print(f"gen_proto_table: {len(lines)} fields in {len(messages)} messages", file=sys.stderr)


if __name__ == "__main__":
    main()
