#!/usr/bin/env python3
"""Syntax-check every Objective-C++ file in csrc/ on Linux.

Runs clang++ -fsyntax-only over each .mm file against the declaration stubs in
tools/apple_sdk_stubs (Apple frameworks) and torch's headers. The target is
x86_64-apple-macos14 (the project's minimum macOS), so availability attributes
are live: a call to a macOS 14.4/15.0 API outside `if (@available(...))` is an
error, as are misspelled selectors and wrong argument types.

Because the target is Darwin but the C/C++ library is the host's glibc and
libstdc++, three host adjustments are needed: __APPLE__/__MACH__ are undefined
(so torch's headers take their non-Apple paths, e.g. int64_t == long),
_GNU_SOURCE is defined (as g++ does on Linux), and clang's Darwin-only
nullability macros are undefined (they clash with glibc's __nonnull()).

Also exports used_selectors()/stub_selectors()/missing_selectors() for tests.

Needs: apt-get install -y clang   (Debian's clang 14 or newer)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "tools" / "apple_sdk_stubs"
CSRC = ROOT / "csrc"
MIN_MACOS = "14.0"


def mm_files() -> list[Path]:
    return sorted(CSRC.rglob("*.mm"))


def _torch_includes() -> list[str]:
    import torch.utils.cpp_extension as ext  # imported late: only the check needs it

    return ext.include_paths()


def _cxx_includes(cxx: str) -> list[str]:
    """The host C++ include dirs (clang's darwin target does not know them)."""
    out = subprocess.run([cxx, "-x", "c++", "-E", "-v", "-", "-o", os.devnull],
                         input="", capture_output=True, text=True).stderr
    dirs, inside = [], False
    for line in out.splitlines():
        if line.startswith("#include <...> search starts here"):
            inside = True
        elif line.startswith("End of search list"):
            break
        elif inside:
            dirs.append(line.strip())
    return dirs


def clang_command(cxx: str, path: Path) -> list[str]:
    host = _cxx_includes(cxx)
    cmd = [cxx, "-fsyntax-only", "-x", "objective-c++", "-fobjc-arc", "-std=c++20",
           f"-target", f"x86_64-apple-macos{MIN_MACOS}",
           "-U__APPLE__", "-U__MACH__", "-D_GNU_SOURCE",
           "-U__nonnull", "-U__nullable", "-U__null_unspecified",
           "-DMPS_EXT_WITH_MPSGRAPH",
           "-Werror=unguarded-availability-new", "-Werror=unguarded-availability",
           "-Werror=objc-method-access", "-Werror=incompatible-pointer-types",
           "-Werror=arc-repeated-use-of-weak", "-Wno-nullability-completeness",
           "-nostdinc++", "-nostdinc",
           "-I", str(CSRC), "-I", str(STUBS)]
    for d in _torch_includes():
        cmd += ["-isystem", d]
    for d in host:
        cmd += ["-isystem", d]
    return cmd + [str(path)]


def check_file(cxx: str, path: Path) -> tuple[Path, int, str]:
    p = subprocess.run(clang_command(cxx, path), capture_output=True, text=True)
    return path, p.returncode, p.stderr


def find_clang() -> str | None:
    return os.environ.get("CLANGXX") or shutil.which("clang++")


def check_all(files: list[Path] | None = None) -> list[tuple[Path, str]]:
    """Returns [(file, clang output)] for every file that failed."""
    cxx = find_clang()
    if cxx is None:
        raise FileNotFoundError("clang++ not found (apt-get install -y clang)")
    files = mm_files() if files is None else files
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda f: check_file(cxx, f), files))
    return [(f, err) for f, rc, err in results if rc != 0]


# --- selectors ------------------------------------------------------------------

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r'@?"(?:\\.|[^"\\])*"')


def _strip(src: str) -> str:
    src = _COMMENT.sub(" ", src)
    # R"(...)" raw strings (Metal source) hold no ObjC.
    src = re.sub(r'R"(\w*)\((.*?)\)\1"', '""', src, flags=re.S)
    return _STRING.sub('""', src)


def _bracket_body(src: str, i: int) -> tuple[str, int] | None:
    depth = 0
    for j in range(i, len(src)):
        c = src[j]
        if c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
            if depth == 0:
                return src[i + 1:j], j
    return None


def _top_level(body: str) -> str:
    """body with everything inside nested (), [], {} blanked out."""
    out, depth = [], 0
    for c in body:
        if c in "([{":
            depth += 1
            out.append(" ")
        elif c in ")]}":
            depth -= 1
            out.append(" ")
        else:
            out.append(c if depth == 0 else " ")
    return "".join(out)


_KEYWORD = re.compile(r"(?<![:\w?])\s*([A-Za-z_]\w*)\s*:(?!:)")


def selectors_in_source(src: str) -> set[str]:
    """Selectors of every `[receiver selector...]` message send in src."""
    src = _strip(src)
    sels = set()
    for m in re.finditer(r"\[", src):
        i = m.start()
        before = src[:i].rstrip()
        prev = before[-1:]
        word = re.search(r"(\w+)$", before)
        if word and word.group(1) in ("return", "else", "case", "throw", "co_return", "in"):
            prev = " "
        if prev == "@" or prev.isalnum() or (prev != "" and prev in "_)]") or src[i + 1:i + 2] == "[":
            continue  # ObjC literal, subscript, or [[attribute]]
        got = _bracket_body(src, i)
        if got is None:
            continue
        top = _top_level(got[0]).strip()
        # receiver: an expression without top-level whitespace (x, ctx.g, [..], f(..))
        rm = re.match(r"^([A-Za-z_][\w.:>-]*|\s*)\s+(.*)$", top, re.S)
        if not rm:
            continue
        rest = rm.group(2)
        keys = _KEYWORD.findall(rest)
        if keys:
            sels.add("".join(k + ":" for k in keys))
        elif re.fullmatch(r"[A-Za-z_]\w*", rest.strip()):
            sels.add(rest.strip())
    return sels


def used_selectors() -> dict[str, set[Path]]:
    used: dict[str, set[Path]] = {}
    for f in mm_files():
        for s in selectors_in_source(f.read_text()):
            used.setdefault(s, set()).add(f)
    return used


def stub_selectors() -> set[str]:
    """Selectors declared in the stubs: methods and property getters/setters."""
    sels = set()
    for h in STUBS.rglob("*.h"):
        src = _COMMENT.sub(" ", h.read_text())
        for m in re.finditer(r"^\s*[-+]\s*\(.*?;", src, re.M | re.S):
            decl = m.group(0)
            decl = re.sub(r"\b(API_AVAILABLE|API_DEPRECATED)\s*\((?:[^()]|\([^()]*\))*\)", " ", decl)
            decl = re.sub(r"\b[A-Z_]+\b", " ", decl)  # other attribute macros
            # drop parenthesised types (one level of nesting suffices here)
            flat = re.sub(r"\((?:[^()]|\([^()]*\))*\)", " ", decl[decl.index("(") - 0:])
            keys = re.findall(r"([A-Za-z_]\w*)\s*:", flat)
            if keys:
                sels.add("".join(k + ":" for k in keys))
            else:
                sels.add(re.findall(r"[A-Za-z_]\w*", flat)[0])
        for m in re.finditer(r"@property\s*\(([^)]*)\)[^;]*?([A-Za-z_]\w*)\s*(?:NS_\w+\s*)?;", src):
            sels.add(m.group(2))
            if "readonly" not in m.group(1):
                sels.add("set" + m.group(2)[0].upper() + m.group(2)[1:] + ":")
    return sels


def missing_selectors() -> dict[str, set[Path]]:
    declared = stub_selectors()
    return {s: fs for s, fs in used_selectors().items() if s not in declared}


def main() -> int:
    files = mm_files()
    if not files:
        print("check_objc: no .mm files under csrc/")
        return 0
    try:
        failed = check_all(files)
    except FileNotFoundError as e:
        print(f"check_objc: {e}", file=sys.stderr)
        return 2
    for f, err in failed:
        print(f"FAILED: {f.relative_to(ROOT)}\n{err}", file=sys.stderr)
    missing = missing_selectors()
    for s, fs in sorted(missing.items()):
        print(f"selector not in stubs: {s} (used in {', '.join(str(p.relative_to(ROOT)) for p in fs)})",
              file=sys.stderr)
    ok = len(files) - len(failed)
    print(f"check_objc: {ok}/{len(files)} .mm files pass clang -fsyntax-only; "
          f"{len(missing)} selectors missing from stubs")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
