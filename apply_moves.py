"""Merge aid for issue 22's data/ moves: rewrite imports and dotted references by MOVES.txt. Delete with MOVES.txt
once every branch is merged.

    python apply_moves.py MOVES.txt $(git ls-files 'src/*.py' 'tests/*.py' registry.yaml 'benchmarks/*.yaml')

`from OLD import a, b` becomes one import per new home of a and b (a `module:Name` line wins over its module's line);
any other mention of an old module path (strings such as "cxrbench.data.vindr:load_vindr", docstrings) is rewritten
where it is not followed by `.name`. A renamed definition (relative_rle -> encode_relative_rle, _size -> rle_size)
is imported under its new name: fix its call sites by hand. Safe to run twice."""
import re, sys, pathlib

def load(moves_path):
    mods, defs = {}, {}
    for line in pathlib.Path(moves_path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line: continue
        old, new = line.split()
        if ":" in old:
            om, on = old.split(":"); nm, nn = new.split(":")
            defs[(om, on)] = (nm, nn)
        else:
            mods[old] = new
    return mods, defs

IMPORT = re.compile(r"^(?P<indent>[ \t]*)from[ \t]+(?P<mod>[\w.]+)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n]*?)(?P<comment>[ \t]*#[^\n]*)?$", re.M)

def resolve(mod, name, mods, defs):
    if f"{mod}.{name}" in mods.values():  # already the new layout: a package and one of its new modules
        return mod, name
    if (mod, name) in defs:
        return defs[(mod, name)]
    if mod in mods:
        return mods[mod], name
    sub = f"{mod}.{name}"
    if sub in mods:  # from package import module
        new = mods[sub]; pkg, _, leaf = new.rpartition(".")
        return pkg, leaf
    return mod, name

def rewrite_import(m, mods, defs):
    mod = m["mod"]
    if not mod.startswith("cxrbench"):
        return m.group(0)
    raw = m["names"].strip().strip("()")
    items = [s.strip() for s in raw.replace("\n", " ").split(",") if s.strip()]
    groups = {}
    for item in items:
        name, _, alias = item.partition(" as ")
        name, alias = name.strip(), alias.strip()
        new_mod, new_name = resolve(mod, name, mods, defs)
        if new_name != name and not alias:
            alias = ""  # renamed definition: callers are fixed by hand
        text = new_name + (f" as {alias}" if alias and alias != new_name else "")
        groups.setdefault(new_mod, []).append(text)
    if list(groups) == [mod] and groups[mod] == items:
        return m.group(0)
    lines = []
    for new_mod, names in groups.items():
        line = f"{m['indent']}from {new_mod} import {', '.join(names)}"
        lines.append(line)
    if m["comment"]:
        lines[-1] += m["comment"]
    return "\n".join(lines)

def rewrite_text(text, mods, defs):
    pieces, last = [], 0
    for m in IMPORT.finditer(text):  # import statements by the import pass, the text between by the dotted pass
        pieces += [rewrite_dotted(text[last:m.start()], mods, defs), rewrite_import(m, mods, defs)]
        last = m.end()
    return "".join(pieces) + rewrite_dotted(text[last:], mods, defs)


def rewrite_dotted(text, mods, defs):
    keys = {f"{om}:{on}": f"{nm}:{nn}" for (om, on), (nm, nn) in defs.items()}
    keys.update(mods)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)) + r")(?![\w]|\.\w)")
    return pattern.sub(lambda m: keys[m.group(1)], text)

if __name__ == "__main__":
    mods, defs = load(sys.argv[1])
    for path in sys.argv[2:]:
        p = pathlib.Path(path)
        old = p.read_text()
        new = rewrite_text(old, mods, defs)
        if new != old:
            p.write_text(new)
            print("rewrote", path)
