#!/usr/bin/env python3
"""
Build (once) and cache a ROS 2 launch tooling underlay for the tests.

A robot has ``launch``, ``launch_ros``, ``ros2 launch`` and ``launch_testing`` from its
ROS install.  Here they come from unmodified source copies beside the checkout
(``../shared/ros2``, override with ``TVF_ROS2_SOURCES``; see its README), installed with
``pip --prefix`` into a cache folder, plus ``composition_interfaces`` (which
``launch_ros.actions`` imports) built with colcon.  The cache is never in the repository:
by default it lives inside the virtual environment that runs this script
(``<venv>/tvf-launch``; override with ``TVF_LAUNCH_ENV``) and is rebuilt only when the
sources, the interpreter or this script change.  The result is an underlay like
``/opt/ros/<distro>``::

    source <cache>/setup.bash        # PATH (ros2, launch_test), PYTHONPATH, AMENT_PREFIX_PATH

    python3 scripts/launch_env.py    # build if needed, print the setup.bash path

The Python packages it needs from PyPI (the ROS build tools for composition_interfaces,
osrf-pycommon, lark-parser, ...) are in requirements-test.txt.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time

REPO = Path(__file__).resolve().parents[1]
VERSION = "1"  # bump when the recipe below changes
PURE_PYTHON = ["launch/launch", "launch/launch_xml", "launch/launch_yaml",
               "launch/launch_testing", "launch_ros/launch_ros", "launch_ros/launch_testing_ros",
               "ros2cli/ros2cli", "ros2cli/ros2pkg", "launch_ros/ros2launch"]
MESSAGES = "rcl_interfaces/composition_interfaces"
# importable modules the recipe needs beside this interpreter (requirements-test.txt)
NEEDED_MODULES = {"osrf_pycommon": "osrf-pycommon", "lark": "lark-parser",
                  "ament_package": "ros-ament-package", "colcon_core": "colcon-core",
                  "rosidl_parser": "ros-rosidl-parser", "psutil": "psutil",
                  "argcomplete": "argcomplete", "rclpy": "ros-rclpy"}


class Unavailable(RuntimeError):
    """The launch tooling cannot be built on this machine (the reason is the message)."""


def sources_dir() -> Path:
    return Path(os.environ.get("TVF_ROS2_SOURCES", REPO.parent / "shared" / "ros2"))


def cache_dir() -> Path:
    return Path(os.environ.get("TVF_LAUNCH_ENV", Path(sys.prefix) / "tvf-launch"))


def wheel_prefix() -> Path:
    """
    Return the prefix the ROS wheels installed their CMake/ament files (share/) into.

    That is the virtual environment's, found from where the wheels' modules really are.
    """
    import ament_package

    site = Path(ament_package.__file__).resolve().parents[1]  # .../lib/python3.X/site-packages
    return site.parents[2]


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages"


def _key(src: Path) -> str:
    """Hash of the sources used, the interpreter and this recipe."""
    digest = hashlib.sha256(f"{VERSION}\n{sys.executable}\n{sys.version}\n".encode())
    for folder in [*PURE_PYTHON, MESSAGES]:
        for path in sorted((src / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(src)).encode())
                digest.update(path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    from importlib import metadata  # the ROS wheels composition_interfaces is built against
    digest.update(" ".join(sorted(f"{d.metadata['Name']}=={d.version}"
                                  for d in metadata.distributions()
                                  if (d.metadata["Name"] or "").startswith("ros-"))).encode())
    return digest.hexdigest()


def check_prerequisites(src: Path) -> None:
    import importlib.util

    if not src.is_dir():
        raise Unavailable(f"ROS 2 launch sources not found at {src} (set TVF_ROS2_SOURCES)")
    missing = [f"{folder}" for folder in [*PURE_PYTHON, MESSAGES] if not (src / folder).is_dir()]
    if missing:
        raise Unavailable(f"{src} lacks {', '.join(missing)}")
    tools = [tool for tool in ("cmake", "make", "gcc", "g++") if shutil.which(tool) is None]
    if tools:
        raise Unavailable(f"{', '.join(tools)} not found (needed to build composition_interfaces)")
    modules = [package for module, package in NEEDED_MODULES.items()
               if importlib.util.find_spec(module) is None]
    if modules:
        raise Unavailable(f"{', '.join(modules)} not installed beside {sys.executable} "
                          "(requirements-test.txt)")
    if not (Path(sys.executable).parent / "colcon").is_file():
        raise Unavailable(f"colcon not found beside {sys.executable}")
    if not (wheel_prefix() / "share" / "ament_cmake_core" / "cmake").is_dir():
        raise Unavailable(f"ament_cmake's CMake files not found under {wheel_prefix()}/share")


def _run(command: list[str], log: Path, **kwargs) -> None:
    with log.open("a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}); "
                           f"log {log}:\n{tail}")


def _fix_wheel_cmake_paths(venv: Path) -> None:
    """
    Point the ROS message wheels' CMake exports at this interpreter (idempotent).

    They name the wheel builder's Python include folder (/opt/python/cp3XX-cp3XX/...),
    and CMake rejects imported targets whose folders do not exist.
    """
    import re

    include = sysconfig.get_paths()["include"]
    try:
        import numpy
        numpy_include = numpy.get_include()
    except ImportError:  # pragma: no cover - numpy is a requirement
        numpy_include = None
    python_re = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
    numpy_re = re.compile(
        r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")
    for path in (venv / "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        if "/opt/python/cp3" not in text:
            continue
        if numpy_include:
            text = numpy_re.sub(numpy_include, text)
        path.write_text(python_re.sub(include, text), errors="surrogateescape")


def _setup_script(cache: Path) -> str:
    venv, bin_dir = wheel_prefix(), Path(sys.executable).parent
    prefix = cache / "prefix"
    lines = [
        "# ROS 2 launch tooling for thermal_visible_fusion's tests (scripts/launch_env.py):",
        "# what /opt/ros/<distro>/setup.bash gives on a robot.  Source it from bash.",
        f'export PATH="{prefix}/bin:{bin_dir}${{PATH:+:$PATH}}"',
        f'export PYTHONPATH="{_site_packages(prefix)}${{PYTHONPATH:+:$PYTHONPATH}}"',
        f'export AMENT_PREFIX_PATH="{prefix}:{venv}${{AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}}"',
        f'export CMAKE_PREFIX_PATH="{venv}${{CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}}"',
        "export ROS_VERSION=2 ROS_PYTHON_VERSION=3 ROS_DISTRO=${ROS_DISTRO:-kilted}",
        f'. "{cache}/ws/install/local_setup.sh"',
        "",
    ]
    return "\n".join(lines)


def _build(src: Path, cache: Path, key: str) -> None:
    venv, bin_dir = wheel_prefix(), Path(sys.executable).parent
    python = sys.executable
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    log = cache / "build.log"
    started = time.monotonic()
    # a venv inside a colcon workspace would be crawled as packages
    (cache / "COLCON_IGNORE").touch()

    # 1. pure-Python packages, from a writable copy (pip builds in place)
    copy = cache / "src"
    for folder in PURE_PYTHON:
        shutil.copytree(src / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "test"))
    prefix = cache / "prefix"
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--no-warn-script-location", "--prefix", str(prefix),
          *[str(copy / folder) for folder in PURE_PYTHON]], log, cwd=copy)

    # 2. composition_interfaces with colcon, against the message wheels in this venv
    _fix_wheel_cmake_paths(venv)
    workspace = cache / "ws"
    shutil.copytree(src / MESSAGES, workspace / "src" / Path(MESSAGES).name)
    env = dict(os.environ)
    for name in ("PYTHONPATH", "COLCON_PREFIX_PATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        env.pop(name, None)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               AMENT_PREFIX_PATH=str(venv), CMAKE_PREFIX_PATH=str(venv),
               COLCON_HOME=str(cache / "colcon_home"), MAKEFLAGS="-j2")
    _run([str(bin_dir / "colcon"), "--log-base", str(workspace / "log"), "build",
          "--base-paths", str(workspace / "src"), "--build-base", str(workspace / "build"),
          "--install-base", str(workspace / "install"), "--merge-install",
          "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={python}"],
         log, cwd=workspace, env=env)
    shutil.rmtree(workspace / "build", ignore_errors=True)  # 30 MB of objects, not needed

    (cache / "setup.bash").write_text(_setup_script(cache))
    (cache / "STAMP").write_text(key)
    with log.open("a") as out:
        out.write(f"built in {time.monotonic() - started:.0f} s\n")


def ensure(verbose: bool = False) -> Path:
    """
    Build the underlay if it is missing or stale; return its setup.bash.

    Raises Unavailable (with the reason) where this machine cannot build it.
    """
    src = sources_dir()
    check_prerequisites(src)
    cache = cache_dir()
    key = _key(src)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{cache}.lock", "w") as lock:  # concurrent test sessions build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = cache / "STAMP"
        if not (stamp.is_file() and stamp.read_text() == key):
            if verbose:
                print(f"[launch_env] building {cache} (a few minutes)", flush=True)
            _build(src, cache, key)
    return cache / "setup.bash"


def main() -> int:
    try:
        print(ensure(verbose=True))
    except Unavailable as error:
        print(f"launch_env: unavailable: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
