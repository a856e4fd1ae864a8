"""Builds mps_ext._C with CMake (the one build system; see CMakeLists.txt).

Install against the torch already in the environment:
    pip install --no-build-isolation -e .
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        # torch's backend auto-loading would import an installed (possibly
        # stale or half-built) mps_ext while we build the new one.
        os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
        import torch  # build-time requirement: the torch the extension will run with

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # A stable build folder keeps Ninja's incremental state across installs.
        build_dir = ROOT / "build" / f"cmake-py{sys.version_info.major}{sys.version_info.minor}"
        build_dir.mkdir(parents=True, exist_ok=True)
        config = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DMPS_EXT_OUTPUT_DIR={out_dir}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('MPS_EXT_BUILD_TYPE', 'Release')}",
        ]
        subprocess.run(config, check=True)
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs], check=True)


setup(
    ext_modules=[CMakeExtension("mps_ext._C")],
    cmdclass={"build_ext": CMakeBuild},
)
