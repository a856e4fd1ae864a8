"""The promises README.md makes: CI runs exactly its test command, the demo runs."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_demo_and_test_commands():
    demo, tests = readme_commands()[:2]
    assert "torch==2.13.0" in demo and "--no-build-isolation -e ." in demo and demo.endswith("python -m mps_ext")
    assert "torch==2.13.0" in tests and tests.endswith("python -m pytest tests -q")


def test_ci_runs_exactly_the_readme_test_command():
    test_cmd = readme_commands()[1].split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in [line.strip() for line in ci.splitlines()]
    assert "set -euo pipefail" in ci  # any failing step fails CI


def test_demo_runs_and_learns():
    out = subprocess.run([sys.executable, "-m", "mps_ext", "--steps", "25"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "runtime" in out.stdout and "device" in out.stdout and "loss: first" in out.stdout
    first, last = map(float, re.search(r"loss: first ([\d.]+) -> last ([\d.]+)", out.stdout).groups())
    assert last < first


def test_demo_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "mps_ext", "--steps", "0"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "--steps must be at least 1" in out.stderr
