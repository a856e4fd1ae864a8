"""Linux checks of the macOS MPSGraph runtime: the lowering's registrations,
clang's view of the Objective-C++ code, the SDK stubs and the docs table.

The registrations (csrc/runtime/mpsgraph/lowerings.def, read back through
mps_ext._C._lowerings()) say which MPSGraph selector each IR node kind lowers
to; clang's AST of lowering.mm and of the families' *_lowering.mm files says
which selectors each lower_<Kind> really sends. Nothing here depends on how the source is formatted. The clang checks
skip only when clang++ is absent (apt-get install -y clang); CI installs it.
"""
import functools
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import mps_ext

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_objc  # noqa: E402

LOWERING = ROOT / "csrc" / "runtime" / "mpsgraph" / "lowering.mm"
TABLE = ROOT / "docs" / "mpsgraph-lowering.md"
COMPOSITE = {"Kernel"}  # lowers as its decomposition: no selector of its own

needs_clang = pytest.mark.skipif(check_objc.find_clang() is None, reason="needs clang++ (apt-get install -y clang)")


def registrations():
    """[(kind, selector, minimum macOS)] in node-kind order."""
    return [tuple(r) for r in mps_ext._C._lowerings()]


def node_kinds():
    """The C++ identifiers of every IR node kind (node_kinds.def, via the build)."""
    return [k for k, _, _ in registrations()]


def lowering_files():
    """lowering.mm and every family file that defines lower_<Kind> functions."""
    return [LOWERING] + [p for p in check_objc.mm_files()
                         if p != LOWERING and "MPSGraphTensor* lower_" in p.read_text()]


@functools.lru_cache(maxsize=None)
def sent_selectors():
    """{function name: [selectors of every message send in it], one list per
    definition} from clang's AST of every lowering file."""
    functions = {}

    def walk(node, sels):
        if isinstance(node, dict):
            if node.get("kind") == "ObjCMessageExpr":
                sels.append(node["selector"])
            for v in node.values():
                walk(v, sels)
        elif isinstance(node, list):
            for v in node:
                walk(v, sels)

    def ast(path):
        cmd = check_objc.clang_command(check_objc.find_clang(), path)
        cmd = cmd[:-1] + ["-Xclang", "-ast-dump=json", "-Xclang", "-ast-dump-filter=lower_", cmd[-1]]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    with ThreadPoolExecutor(2) as pool:
        dumps = list(pool.map(ast, lowering_files()))
    for out in dumps:
        decoder, i = json.JSONDecoder(), 0
        while True:
            while i < len(out) and out[i].isspace():
                i += 1
            if i >= len(out):
                break
            decl, i = decoder.raw_decode(out, i)
            body = [n for n in decl.get("inner", []) if n.get("kind") == "CompoundStmt"]
            if decl.get("kind") == "FunctionDecl" and body:  # definitions only
                sels = []
                walk(decl, sels)
                functions.setdefault(decl["name"], []).append(sels)
    return functions


def test_family_kinds_are_lowered_next_to_their_family():
    files = {p.relative_to(ROOT).as_posix() for p in lowering_files()}
    assert {"csrc/ops/spectral/fft_lowering.mm", "csrc/ops/attention/sdpa_lowering.mm",
            "csrc/ops/quantization/dequantize_lowering.mm", "csrc/ops/aten/convolution_lowering.mm"} <= files


def table_rows():
    rows = {}
    kinds = set(node_kinds())
    for line in TABLE.read_text().splitlines():
        m = re.match(r"^\|\s*(\w+)\s*\|\s*`([^`]+)`\s*\|\s*([\d.]+)\s*\|", line)
        if m and m.group(1) in kinds:
            rows.setdefault(m.group(1), []).append((m.group(2), m.group(3)))
    return rows


def test_every_kind_is_registered_once():
    kinds = node_kinds()
    assert len(kinds) == len(set(kinds)) == len(mps_ext._C._node_kinds())
    assert {"Placeholder", "Add", "MatMul", "ReduceSum", "Equal", "Kernel"} <= set(kinds)


@needs_clang
def test_every_kind_has_exactly_one_lowering_function():
    functions = sent_selectors()
    lowerings = {name[len("lower_"):]: bodies for name, bodies in functions.items()
                 if name.startswith("lower_") and name[len("lower_"):] in node_kinds()}
    assert sorted(k for k in node_kinds() if k not in lowerings) == [], "kinds without lower_<Kind>"
    assert [k for k, b in lowerings.items() if len(b) != 1] == [], "kinds lowered more than once"


@needs_clang
def test_each_lowering_sends_its_registered_selector():
    functions = sent_selectors()
    for kind, selector, _ in registrations():
        if kind in COMPOSITE:  # lowers its decomposition through lower_values
            assert "lower_values" in functions
            continue
        (sent,) = functions[f"lower_{kind}"]
        assert selector in sent, f"lower_{kind} is registered as {selector} but sends {sent}"


def test_registered_selectors_are_declared_in_the_stubs():
    declared = check_objc.stub_selectors()
    missing = [(k, s) for k, s, _ in registrations() if k not in COMPOSITE and s not in declared]
    assert missing == []


def test_registered_versions_are_versions():
    for kind, _, macos in registrations():
        assert re.fullmatch(r"1[1-9]\.\d", macos), (kind, macos)


def test_docs_table_matches_the_registrations():
    rows = table_rows()
    for kind, selector, macos in registrations():
        assert rows.get(kind) == [(selector, macos)], f"{kind}: {TABLE.name} says {rows.get(kind)}, registered {(selector, macos)}"


def test_selector_extraction_finds_sends():
    src = 'x = [c.g foo:a bar:[d baz] name:nil]; y = v[3]; auto f = [&]() {}; id z = @[a, b]; [enc endEncoding];'
    assert check_objc.selectors_in_source(src) == {"foo:bar:name:", "baz", "endEncoding"}


def test_every_used_selector_is_in_the_stubs():
    used = check_objc.used_selectors()
    assert "placeholderWithShape:dataType:name:" in used  # the scan sees the lowering
    assert check_objc.missing_selectors() == {}


def test_clang_syntax_check_passes():
    if check_objc.find_clang() is None:
        pytest.skip("clang++ not installed (apt-get install -y clang)")
    files = check_objc.mm_files()
    assert len(files) >= 3
    failed = check_objc.check_all(files)
    assert not failed, "\n".join(f"{f}:\n{err}" for f, err in failed)


def test_clang_syntax_check_catches_a_misspelled_selector(tmp_path):
    if check_objc.find_clang() is None:
        pytest.skip("clang++ not installed (apt-get install -y clang)")
    bad = tmp_path / "bad.mm"
    bad.write_text(LOWERING.read_text().replace("[c.g tanhWithTensor:", "[c.g tanhWithTensr:")
                   .replace('#import "runtime/mpsgraph/lowering.h"',
                            f'#import "{LOWERING.parent / "lowering.h"}"'))
    failed = check_objc.check_all([bad])
    assert failed and "tanhWithTensr" in failed[0][1]


def test_macos_branches_of_cpp_files_compile():
    """C++ files with `#ifdef MPS_EXT_WITH_MPSGRAPH` sections (MPS-key kernels,
    the runtime switch) are compiled with that macro on, syntax only."""
    import shutil
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    import torch.utils.cpp_extension as ext
    import sysconfig

    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler (apt-get install -y g++)")
    files = [p for p in sorted((ROOT / "csrc").rglob("*.cpp")) if "MPS_EXT_WITH_MPSGRAPH" in p.read_text()]
    assert len(files) >= 2  # the runtime switch and the softshrink MPS kernels
    flags = ["-std=c++20", "-fsyntax-only", "-DMPS_EXT_WITH_MPSGRAPH", "-I", str(ROOT / "csrc"),
             "-isystem", sysconfig.get_paths()["include"]]
    for d in ext.include_paths():
        flags += ["-isystem", d]

    def check(path):
        r = subprocess.run([cxx, *flags, str(path)], capture_output=True, text=True)
        return path, r.returncode, r.stderr

    with ThreadPoolExecutor(2) as pool:
        failed = [(p, err) for p, rc, err in pool.map(check, files) if rc != 0]
    assert not failed, "\n".join(f"{p}:\n{err[:3000]}" for p, err in failed)
