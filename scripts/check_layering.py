#!/usr/bin/env python3
"""Check that #include lines respect the floors in cmake/layers.txt.

Usage: python3 scripts/check_layering.py [--root DIR] [--rules FILE]

Prints each violation as `path:line: message`, then a summary line.
Exit status: 0 clean, 1 violations, 2 missing or unparseable rules file.
"""
import argparse
import os
import re
import sys

SCANNED = ("host", "kernels", "bench", "tests")  # top folders holding code
EXTENSIONS = {".h", ".hpp", ".cuh", ".c", ".cc", ".cpp", ".cu", ".inc"}
# Not code of the project: the emulator's shim stands in for system headers,
# and the layering fixtures are deliberately broken test data.
SKIPPED = {"tests/emu/shim", "tests/layering"}
# Where a quoted include is looked up, in order. Deliberately NOT the
# including file's own folder: an include names its floor ("core/philox.h").
INCLUDE_ROOTS = ("host", "", "bench", "tests")
# Anchored at the start of the line so `// #include "x"` is not read.
QUOTED = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
CLI11 = re.compile(r'^\s*#\s*include\s*<(CLI/[^>]*)>')


def fail(message):
    print("check_layering: " + message, file=sys.stderr)
    sys.exit(2)


def read_rules(path):
    """Return ({floor: set of floors it may include}, set of generated names)."""
    if not os.path.isfile(path):
        fail("rules file not found: " + path)
    rules, generated = {}, set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, colon, rest = line.partition(":")
            key = key.strip().strip("/")
            if not colon or not key or " " in key:
                fail("%s:%d: expected `floor: floors...`" % (path, number))
            if key == "generated":
                generated.update(rest.split())
            else:
                rules[key] = set(rest.split())
    if not rules:
        fail("no floors in " + path)
    for key, allowed in rules.items():
        unknown = allowed - set(rules) - {"*"}
        if unknown:
            fail("%s: floor %s lists unknown floor(s) %s"
                 % (path, key, " ".join(sorted(unknown))))
    return rules, generated


def floor_of(rel, rules):
    """Longest rule key that is a path prefix of rel (a /-separated path)."""
    matches = [k for k in rules if rel == k or rel.startswith(k + "/")]
    return max(matches, key=len) if matches else None


def source_files(root):
    for top in SCANNED:
        for folder, dirs, files in os.walk(os.path.join(root, top)):
            rel_folder = os.path.relpath(folder, root).replace(os.sep, "/")
            # Prune in place so os.walk does not descend; sorted for stable output.
            dirs[:] = sorted(d for d in dirs if not d.startswith("build")
                             and rel_folder + "/" + d not in SKIPPED)
            for name in sorted(files):
                if os.path.splitext(name)[1] in EXTENSIONS:
                    yield rel_folder + "/" + name


def resolve(root, name):
    """Root-relative path of the file an include names, or None."""
    for include_root in INCLUDE_ROOTS:
        candidate = os.path.normpath(os.path.join(root, include_root, name))
        rel = os.path.relpath(candidate, root).replace(os.sep, "/")
        if not rel.startswith("../") and os.path.isfile(candidate):
            return rel
    return None


def check_file(root, rel, rules, generated, report):
    """Check one file; return how many includes it holds."""
    floor = floor_of(rel, rules)
    if floor is None:
        report(rel, 1, "no floor: the path matches no rule in layers.txt")
    in_library = rel.startswith(("host/", "kernels/"))
    checked = 0
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            cli = CLI11.match(line)
            if cli:
                checked += 1
                if in_library:
                    report(rel, number, "includes <%s>: the library (host/, kernels/) "
                           "never includes the command-line parser CLI11" % cli.group(1))
                continue
            quoted = QUOTED.match(line)
            if not quoted:
                continue
            checked += 1
            name = quoted.group(1)
            if name in generated:
                continue
            target = resolve(root, name)
            if target is None:
                report(rel, number, 'includes "%s": does not resolve (looked in %s)'
                       % (name, ", ".join((r or ".") + "/" for r in INCLUDE_ROOTS)))
                continue
            target_floor = floor_of(target, rules)
            if target_floor is None:
                report(rel, number, 'includes "%s": %s is on no floor' % (name, target))
            elif floor is not None and target_floor != floor:
                allowed = rules[floor]
                if "*" not in allowed and target_floor not in allowed:
                    report(rel, number, 'includes "%s": floor %s may not include %s'
                           % (name, floor, target_floor))
    return checked


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.dirname(here),
                        help="repository root (default: parent of scripts/)")
    parser.add_argument("--rules", help="rules file (default: ROOT/cmake/layers.txt)")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    rules, generated = read_rules(args.rules or os.path.join(root, "cmake", "layers.txt"))

    violations = []

    def report(rel, number, message):
        violations.append("%s:%d: %s" % (rel, number, message))

    files = includes = 0
    for rel in source_files(root):
        files += 1
        includes += check_file(root, rel, rules, generated, report)
    for violation in violations:
        print(violation)
    print("layering: %d files, %d includes checked, %d violations"
          % (files, includes, len(violations)))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
