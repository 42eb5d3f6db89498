#!/usr/bin/env python3
"""The public API of a crate, one line per item, from rustdoc's JSON output.

    .ci/public-api.py check   # compare with the committed snapshots, exit 1 on a difference
    .ci/public-api.py bless   # rewrite the snapshots after a deliberate change

It runs `cargo doc --no-deps` for the crates in CRATES with rustdoc's JSON
output (on stable, with RUSTC_BOOTSTRAP=1 for the unstable flag) and walks the
documented surface from the crate root: modules, re-exports, structs with their
public fields, enums with their variants, traits with their items, free
functions, constants, and the methods and trait impls of each type. Items
hidden from the documentation (the 0.1 flat paths kept for compatibility) are
not listed. The snapshot is `<crate>/public-api.txt`; a change to the public
surface shows up as a diff of it in review, so it is always deliberate.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ["outbox-core", "outbox-postgres", "outbox-mysql", "outbox-sqlite"]
# Auto traits and blanket impls say nothing a reviewer decides.
SKIP_TRAITS = {
    "Send", "Sync", "Unpin", "UnwindSafe", "RefUnwindSafe", "Freeze",
    "StructuralPartialEq",
}


class Api:
    def __init__(self, doc):
        self.index = doc["index"]
        self.paths = doc["paths"]
        self.lines = set()

    def item(self, item_id):
        return self.index.get(str(item_id))

    # ---- types -------------------------------------------------------
    def ty(self, t):
        if t is None:
            return "()"
        if isinstance(t, str):
            return "_" if t == "infer" else t
        (kind, v), = t.items()
        if kind == "resolved_path":
            return self.path(v)
        if kind == "generic" or kind == "primitive":
            return v
        if kind == "borrowed_ref":
            lt = f"{v['lifetime']} " if v.get("lifetime") else ""
            mut = "mut " if v.get("is_mutable") else ""
            return f"&{lt}{mut}{self.ty(v['type'])}"
        if kind == "raw_pointer":
            return f"*{'mut' if v.get('is_mutable') else 'const'} {self.ty(v['type'])}"
        if kind == "tuple":
            return "(" + ", ".join(self.ty(x) for x in v) + ")"
        if kind == "slice":
            return f"[{self.ty(v)}]"
        if kind == "array":
            return f"[{self.ty(v['type'])}; {v['len']}]"
        if kind == "impl_trait":
            return "impl " + self.bounds(v)
        if kind == "dyn_trait":
            traits = [self.path(p["trait"]) for p in v["traits"]]
            if v.get("lifetime"):
                traits.append(v["lifetime"])
            return "dyn " + " + ".join(traits)
        if kind == "qualified_path":
            trait = self.path(v["trait"]) if v.get("trait") else "_"
            return f"<{self.ty(v['self_type'])} as {trait}>::{v['name']}"
        return json.dumps(t, sort_keys=True)

    def path(self, p):
        name = p.get("path") or p.get("name") or "?"
        return name + self.args(p.get("args"))

    def args(self, a):
        if not a:
            return ""
        if "angle_bracketed" in a:
            ab = a["angle_bracketed"]
            parts = []
            for arg in ab.get("args", []):
                (k, v), = arg.items()
                parts.append(v if k == "lifetime" else self.ty(v) if k == "type" else json.dumps(v))
            for c in ab.get("constraints", []):
                binding = c.get("binding", {})
                if "equality" in binding:
                    eq = binding["equality"]
                    parts.append(f"{c['name']} = {self.ty(eq.get('type')) if isinstance(eq, dict) and 'type' in eq else json.dumps(eq)}")
                else:
                    parts.append(f"{c['name']}: {self.bounds(binding.get('constraint', []))}")
            return "<" + ", ".join(parts) + ">" if parts else ""
        if "parenthesized" in a:
            pz = a["parenthesized"]
            out = f" -> {self.ty(pz['output'])}" if pz.get("output") else ""
            return "(" + ", ".join(self.ty(x) for x in pz["inputs"]) + ")" + out
        return json.dumps(a, sort_keys=True)

    def bounds(self, bounds):
        out = []
        for b in bounds:
            if "trait_bound" in b:
                tb = b["trait_bound"]
                mod = "?" if tb.get("modifier") == "maybe" else ""
                out.append(mod + self.path(tb["trait"]))
            elif "outlives" in b:
                out.append(b["outlives"])
            else:
                out.append(json.dumps(b, sort_keys=True))
        return " + ".join(out)

    def generics(self, g):
        params = []
        for p in g.get("params", []):
            kind = p["kind"]
            if "lifetime" in kind:
                params.append(p["name"])
            elif "type" in kind:
                if kind["type"].get("is_synthetic"):
                    continue
                b = self.bounds(kind["type"].get("bounds", []))
                params.append(p["name"] + (f": {b}" if b else ""))
            elif "const" in kind:
                params.append(f"const {p['name']}: {self.ty(kind['const']['type'])}")
        where = []
        for w in g.get("where_predicates", []):
            if "bound_predicate" in w:
                bp = w["bound_predicate"]
                where.append(f"{self.ty(bp['type'])}: {self.bounds(bp['bounds'])}")
        s = "<" + ", ".join(params) + ">" if params else ""
        return s, (" where " + ", ".join(where) if where else "")

    def fn(self, path, f):
        sig = f["sig"]
        header = f.get("header", {})
        prefix = ("const " if header.get("is_const") else "") + ("async " if header.get("is_async") else "") + ("unsafe " if header.get("is_unsafe") else "")
        gen, where = self.generics(f.get("generics", {}))
        inputs = []
        for name, t in sig["inputs"]:
            inputs.append(f"{name}: {self.ty(t)}")
        out = f" -> {self.ty(sig['output'])}" if sig.get("output") else ""
        return f"pub {prefix}fn {path}{gen}({', '.join(inputs)}){out}{where}"

    # ---- items -------------------------------------------------------
    def walk(self, item_id, path, seen):
        item = self.item(item_id)
        if item is None:
            return
        (kind, inner), = item["inner"].items()
        key = (item_id, path)
        if key in seen:
            return
        seen.add(key)
        if kind == "module":
            if path:
                self.lines.add(f"pub mod {path}")
            for child in inner["items"]:
                self.child(child, path, seen)
        elif kind == "struct":
            gen, where = self.generics(inner.get("generics", {}))
            self.lines.add(f"pub struct {path}{gen}{where}")
            skind = inner["kind"]
            if "plain" in skind:
                for field_id in skind["plain"]["fields"]:
                    f = self.item(field_id)
                    if f and f.get("visibility") == "public":
                        self.lines.add(f"pub {path}.{f['name']}: {self.ty(f['inner']['struct_field'])}")
            elif "tuple" in skind:
                fields = [self.ty(self.item(x)["inner"]["struct_field"]) if x is not None and self.item(x) else "_" for x in skind["tuple"]]
                self.lines.add(f"pub struct {path}({', '.join(fields)})")
            self.impls(path, inner.get("impls", []))
        elif kind == "enum":
            gen, where = self.generics(inner.get("generics", {}))
            self.lines.add(f"pub enum {path}{gen}{where}")
            for v_id in inner["variants"]:
                v = self.item(v_id)
                if not v:
                    continue
                vk = v["inner"]["variant"]["kind"]
                if vk == "plain":
                    self.lines.add(f"pub {path}::{v['name']}")
                elif "tuple" in vk:
                    fields = [self.ty(self.item(x)["inner"]["struct_field"]) if x is not None and self.item(x) else "_" for x in vk["tuple"]]
                    self.lines.add(f"pub {path}::{v['name']}({', '.join(fields)})")
                elif "struct" in vk:
                    for x in vk["struct"]["fields"]:
                        f = self.item(x)
                        if f:
                            self.lines.add(f"pub {path}::{v['name']}.{f['name']}: {self.ty(f['inner']['struct_field'])}")
            self.impls(path, inner.get("impls", []))
        elif kind == "function":
            self.lines.add(self.fn(path, inner))
        elif kind == "trait":
            gen, where = self.generics(inner.get("generics", {}))
            sup = self.bounds(inner.get("bounds", []))
            self.lines.add(f"pub trait {path}{gen}{': ' + sup if sup else ''}{where}")
            for t_id in inner["items"]:
                t = self.item(t_id)
                if not t:
                    continue
                (tk, ti), = t["inner"].items()
                if tk == "function":
                    line = self.fn(f"{path}::{t['name']}", ti)
                    if ti.get("has_body"):
                        line += " (provided)"
                    self.lines.add(line)
                else:
                    self.lines.add(f"pub {tk} {path}::{t['name']}")
        elif kind == "constant":
            self.lines.add(f"pub const {path}: {self.ty(inner['type'])}")
        elif kind == "static":
            self.lines.add(f"pub static {path}: {self.ty(inner['type'])}")
        elif kind == "type_alias":
            self.lines.add(f"pub type {path} = {self.ty(inner['type'])}")
        elif kind == "macro":
            self.lines.add(f"macro {path}!")
        else:
            self.lines.add(f"pub {kind} {path}")

    def child(self, child_id, parent, seen):
        item = self.item(child_id)
        if item is None:
            return
        join = (lambda n: f"{parent}::{n}" if parent else n)
        if "use" in item["inner"]:
            use = item["inner"]["use"]
            target = self.item(use["id"]) if use.get("id") is not None else None
            if use["is_glob"]:
                if target and "module" in target["inner"]:
                    for c in target["inner"]["module"]["items"]:
                        self.child(c, parent, seen)
                else:
                    self.lines.add(f"pub use {use['source']}::* at {parent or 'crate'}")
            elif target is not None and target.get("crate_id") == 0:
                self.walk(use["id"], join(use["name"]), seen)
            else:
                self.lines.add(f"pub use {use['source']} as {join(use['name'])}")
        else:
            self.walk(child_id, join(item["name"]), seen)

    def impls(self, path, impl_ids):
        for impl_id in impl_ids:
            imp = self.item(impl_id)
            if not imp:
                continue
            i = imp["inner"]["impl"]
            if i.get("is_synthetic") or i.get("blanket_impl") is not None:
                continue
            if i.get("trait"):
                name = i["trait"].get("path", "")
                if name.split("::")[-1] in SKIP_TRAITS:
                    continue
                gen, where = self.generics(i.get("generics", {}))
                neg = "!" if i.get("is_negative") else ""
                self.lines.add(f"impl{gen} {neg}{self.path(i['trait'])} for {self.ty(i['for'])}{where}")
                continue
            for m_id in i["items"]:
                m = self.item(m_id)
                if not m or m.get("visibility") != "public":
                    continue
                (mk, mi), = m["inner"].items()
                if mk == "function":
                    self.lines.add(self.fn(f"{path}::{m['name']}", mi))
                elif mk == "constant":
                    self.lines.add(f"pub const {path}::{m['name']}: {self.ty(mi['type'])}")


def build_docs():
    """One `cargo doc` for every crate: one feature resolution, so the
    dependencies build once (a `cargo rustdoc -p` per crate would build
    sea-orm once per backend driver)."""
    env = dict(os.environ, RUSTC_BOOTSTRAP="1",
               RUSTDOCFLAGS="-Z unstable-options --output-format json")
    packages = [arg for crate in CRATES for arg in ("-p", crate)]
    subprocess.run(["cargo", "doc", "-q", "--no-deps", "--lib", *packages],
                   cwd=ROOT, env=env, check=True)


def render(crate):
    lib = crate.replace("-", "_")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    doc = json.loads((target / "doc" / f"{lib}.json").read_text())
    api = Api(doc)
    api.walk(doc["root"], "", set())
    header = (f"# The public API of {crate}, from `.ci/public-api.py bless`.\n"
              "# A change here is a change to the public surface: make it deliberately.\n")
    return header + "\n".join(sorted(api.lines)) + "\n"


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    if mode not in ("check", "bless"):
        sys.exit("usage: .ci/public-api.py check|bless")
    build_docs()
    changed = []
    for crate in CRATES:
        snapshot = ROOT / crate / "public-api.txt"
        text = render(crate)
        if mode == "bless":
            snapshot.write_text(text)
            print(f"public-api: wrote {snapshot.relative_to(ROOT)} ({text.count(chr(10)) - 2} items)")
        elif not snapshot.exists() or snapshot.read_text() != text:
            old = snapshot.read_text().splitlines() if snapshot.exists() else []
            new = text.splitlines()
            removed = [l for l in old if l not in set(new)]
            added = [l for l in new if l not in set(old)]
            print(f"public-api: {crate} differs from {snapshot.relative_to(ROOT)}:")
            for l in removed:
                print(f"  - {l}")
            for l in added:
                print(f"  + {l}")
            changed.append(crate)
    if changed:
        print("public-api: the public surface changed; if that is deliberate, run "
              "`.ci/public-api.py bless`, note it in CHANGELOG.md, and commit the snapshots")
        sys.exit(1)
    if mode == "check":
        print(f"public-api: {', '.join(CRATES)} match their snapshots")


if __name__ == "__main__":
    main()
