"""Linux checks of the macOS MPSGraph runtime: file checks plus clang.

Needs no built extension. The clang check skips only when clang++ is absent
(apt-get install -y clang); CI installs it.
"""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_objc  # noqa: E402

LOWERING = ROOT / "csrc" / "runtime" / "mpsgraph" / "lowering.mm"
TABLE = ROOT / "docs" / "mpsgraph-lowering.md"


def node_kinds():
    src = (ROOT / "csrc" / "graph" / "node_kinds.def").read_text()
    return re.findall(r"^MPS_EXT_(?:NODE|UNARY|BINARY|COMPARE|REDUCE)\((\w+),", src, re.M)


def lowering_bodies():
    """{kind: [source of each lower_<kind> definition]}"""
    src = LOWERING.read_text()
    starts = [(m.group(1), m.start()) for m in
              re.finditer(r"^static MPSGraphTensor\* lower_(\w+)\(const LowerCtx&", src, re.M)]
    end = src.index("using LowerFn")
    bodies = {}
    for i, (kind, pos) in enumerate(starts):
        stop = starts[i + 1][1] if i + 1 < len(starts) else end
        bodies.setdefault(kind, []).append(src[pos:stop])
    return bodies


def primary_selector(body):
    """Selector of the first send to the graph on a line annotated `// macOS X`."""
    for line in body.splitlines():
        if re.search(r"// macOS \d+\.\d+", line) and "[c.g " in line:
            code = line[: line.index("// macOS")]
            sends = check_objc.selectors_in_source(code[code.index("[c.g "):])
            m = re.match(r"\[c\.g\s+(\w+)", code[code.index("[c.g "):])
            matching = [s for s in sends if s.startswith(m.group(1))]
            assert len(matching) == 1, line
            return matching[0], re.search(r"// macOS (\d+\.\d+)", line).group(1)
    return None, None


def table_rows():
    rows = {}
    for line in TABLE.read_text().splitlines():
        m = re.match(r"^\|\s*(\w+)\s*\|\s*`([^`]+)`\s*\|\s*([\d.]+)\s*\|", line)
        if m and m.group(1) in set(node_kinds()):
            rows.setdefault(m.group(1), []).append((m.group(2), m.group(3)))
    return rows


def test_node_kinds_parsed():
    kinds = node_kinds()
    assert len(kinds) > 40 and len(set(kinds)) == len(kinds)
    assert {"Placeholder", "Add", "MatMul", "ReduceSum", "Equal"} <= set(kinds)


def test_every_kind_has_exactly_one_lowering():
    bodies = lowering_bodies()
    kinds = node_kinds()
    assert sorted(k for k in kinds if k not in bodies) == [], "kinds without lower_<Kind>"
    assert sorted(k for k in bodies if k not in kinds) == [], "lower_<Kind> for unknown kinds"
    assert [k for k, b in bodies.items() if len(b) != 1] == [], "kinds lowered more than once"


# Kinds that lower to other kinds' lowerings rather than one selector.
COMPOSITE = {"Kernel": ("(decomposition)", "14.0")}


def test_every_lowering_names_its_selector_and_version():
    for kind, (body,) in lowering_bodies().items():
        if kind in COMPOSITE:
            assert "lower_values" in body, f"lower_{kind} should lower its decomposition"
            continue
        sel, ver = primary_selector(body)
        assert sel, f"lower_{kind}: no `[c.g ...]  // macOS X.Y` line"


def test_newer_selectors_are_guarded():
    for kind, (body,) in lowering_bodies().items():
        for line in body.splitlines():
            m = re.search(r"// macOS (\d+)\.(\d+)", line)
            if m and (int(m.group(1)), int(m.group(2))) > (14, 0):
                assert "@available(macOS" in body, f"lower_{kind} uses macOS {m.group(1)}.{m.group(2)} unguarded"


def test_table_has_one_matching_row_per_kind():
    rows, bodies = table_rows(), lowering_bodies()
    for kind in node_kinds():
        assert len(rows.get(kind, [])) == 1, f"{kind}: expected one row in {TABLE.name}, got {rows.get(kind)}"
        sel, ver = COMPOSITE.get(kind) or primary_selector(bodies[kind][0])
        assert rows[kind][0] == (sel, ver), f"{kind}: table says {rows[kind][0]}, lowering uses {(sel, ver)}"


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
