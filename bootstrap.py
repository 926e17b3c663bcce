#!/usr/bin/env python3
"""
Set up a local virtual environment on first use, then run a project command.

    python3 bootstrap.py demo            # the demo: node + synthetic scene over DDS
    python3 bootstrap.py test            # the whole test suite
    python3 bootstrap.py tvf COMMAND ... # any other tvf tool

Needs only Python >= 3.10.  Installs requirements*.txt and this package (editable)
into .venv, again only when those files change.  TVF_TORCH=cuda installs the
CUDA build of torch instead of the pinned CPU one (see README, "GPU").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import subprocess
import sys
import venv

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TVF_VENV", ROOT / ".venv"))
STAMP = VENV / ".tvf-installed"
REQUIREMENTS = ["requirements.txt", "requirements-test.txt"]


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def wanted_stamp() -> str:
    digest = hashlib.sha256(os.environ.get("TVF_TORCH", "cpu").encode())
    for name in [*REQUIREMENTS, "setup.py", "setup.cfg"]:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    if STAMP.exists() and STAMP.read_text() == wanted_stamp():
        return
    if not venv_python().exists():
        print(f"[bootstrap] creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check"]
    requirements = (ROOT / "requirements.txt").read_text()
    if os.environ.get("TVF_TORCH") == "cuda":  # unpinned torch from PyPI is the CUDA build
        requirements = requirements.replace("torch==2.13.0", "torch")
    resolved = VENV / "requirements-resolved.txt"
    resolved.write_text(requirements)
    print("[bootstrap] installing requirements (first run takes a few minutes)", flush=True)
    subprocess.run([*pip, "-q", "-r", str(resolved), "-r", str(ROOT / "requirements-test.txt")],
                   check=True)
    subprocess.run([*pip, "-q", "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(wanted_stamp())


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    ensure_environment()
    command, rest = argv[0], argv[1:]
    python = str(venv_python())
    if command == "test":
        run = [python, "-m", "pytest", "-q", *rest]
    elif command == "tvf":
        run = [python, "-m", "thermal_visible_fusion", *rest]
    else:
        run = [python, "-m", "thermal_visible_fusion", command, *rest]
    return subprocess.run(run, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
