#!/usr/bin/env python3
"""Fails if, inside one library crate, source files import each other in a circle.

A module's imports should point one way (a queue's hooks belong to the queue's module, not to
the inbox that uses the queue): a circle means two files can only be understood together. This
walks every `crates/*/src` tree, maps each file to its module path, collects the `crate::` and
`super::` paths (and child modules named by bare paths, `pub use` re-exports included) each
file names outside its `#[cfg(test)]` part, resolves them to the file that
defines the module, and reports every strongly connected group of more than one file.

rustc would accept such circles, which is why a script checks them; it reads paths textually
(no macro expansion), which is enough for this workspace's plain `use` style.

Usage: python3 scripts/check-module-cycles.py [workspace root]
"""
import os
import re
import sys

PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*?)\}", re.S)


def module_of(src, path):
    """The module path of a source file, as a tuple (the crate root is ())."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel in (["lib"], ["main"]):
        return ()
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)


def non_test_text(path):
    """The file without its `#[cfg(test)]` modules (test code may import anything)."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    skip_depth = None
    pending_cfg_test = False
    depth = 0
    for line in lines:
        stripped = line.strip()
        if skip_depth is None:
            if stripped.startswith("//"):
                out.append("")
                continue
            if stripped == "#[cfg(test)]":
                pending_cfg_test = True
                continue
            if pending_cfg_test and re.match(r"(pub(\([^)]*\))? )?mod \w+\s*\{", stripped):
                skip_depth = depth
                depth += line.count("{") - line.count("}")
                pending_cfg_test = False
                continue
            pending_cfg_test = False
            out.append(line)
            depth += line.count("{") - line.count("}")
        else:
            depth += line.count("{") - line.count("}")
            if depth <= skip_depth:
                skip_depth = None
    return "\n".join(out)


def referenced_paths(text):
    """Every `crate::a::b` / `super::a` / `child::a` path named, with `{a, b::c}` groups
    expanded. `pub use` re-exports count too: a `mod.rs` that publishes its children's items
    and defines something they import back is a circle a reader has to untangle."""
    found = []
    for m in re.finditer(r"(?m)^\s*(?:pub(?:\([^)]*\))? )?use ([a-z_][a-z0-9_]*)::", text):
        if m.group(1) not in ("crate", "super", "self", "std", "core", "alloc"):
            found.append(("self", m.group(1)))
    # A child module named by a bare path in code (`bench::run(..)`), not through `use`.
    for m in re.finditer(r"(?<![:\w])([a-z_][a-z0-9_]*)::[A-Za-z_]", text):
        if m.group(1) not in ("crate", "super", "self", "std", "core", "alloc"):
            found.append(("self", m.group(1)))
    for m in GROUP_RE.finditer(text):
        base = (m.group(1),) + tuple(p for p in m.group(2).split("::") if p)
        for item in m.group(3).split(","):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self":
                found.append(base + tuple(p for p in item.split("::") if p and p != "{"))
            elif item == "self":
                found.append(base)
    for m in PATH_RE.finditer(text):
        found.append((m.group(1),) + tuple(p for p in m.group(2).split("::") if p))
    return found


def resolve(path, here, modules):
    """The module (file) a path lands in: the longest known module prefix."""
    if path[0] == "crate":
        parts = list(path[1:])
        base = ()
    elif path[0] == "self":
        parts = list(path[1:])
        base = here
        if here + tuple(parts[:1]) not in modules:
            return None
    else:
        base = here
        parts = list(path)
        while parts and parts[0] == "super":
            base = base[:-1]
            parts.pop(0)
    full = base + tuple(parts)
    for n in range(len(full), -1, -1):
        if full[:n] in modules:
            return full[:n]
    return None


def cycles(graph):
    """Strongly connected groups of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    crates = os.path.join(root, "crates")
    bad = 0
    for crate in sorted(os.listdir(crates)):
        src = os.path.join(crates, crate, "src")
        if not os.path.isdir(src):
            continue
        files = {}
        for dirpath, _, names in os.walk(src):
            for name in names:
                if name.endswith(".rs"):
                    path = os.path.join(dirpath, name)
                    files[module_of(src, path)] = path
        graph = {}
        for here, path in files.items():
            deps = set()
            for ref in referenced_paths(non_test_text(path)):
                target = resolve(ref, here, files)
                # A parent re-exporting its children, or a child using its parent's items, is
                # the ordinary shape of a module folder: only circles between files count.
                if target is not None and target != here:
                    deps.add(target)
            graph[here] = deps
        for group in cycles(graph):
            names = ["::".join(g) or "(crate root)" for g in group]
            print(f"{crate}: modules import each other in a circle: {', '.join(names)}")
            for g in group:
                targets = sorted("::".join(t) or "(crate root)" for t in graph[g] if t in group)
                print(f"    {'::'.join(g) or '(crate root)'} -> {', '.join(targets)}")
            bad += 1
    if bad:
        sys.exit(1)
    print("no import circles between the library crates' source files")


if __name__ == "__main__":
    main()
