"""
Where the package's shared files (config, launch, rviz) are, however it was installed.

colcon and ``pip install .`` put them in ``<prefix>/share/thermal_visible_fusion``;
a source checkout (editable install, tests) has them beside the Python package.
"""

from __future__ import annotations

from pathlib import Path
import sys

PACKAGE = "thermal_visible_fusion"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # no ament index, or the package is not in it
        pass
    candidates += [_SOURCE_ROOT, Path(sys.prefix) / "share" / PACKAGE]
    for candidate in candidates:
        if (candidate / "config" / "fusion.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"cannot find {PACKAGE}'s config/fusion.yaml in "
                            + ", ".join(map(str, candidates)))


def config_file(name: str = "fusion.yaml") -> Path:
    return share_dir() / "config" / name


def fastdds_profile() -> Path:
    return config_file("fastdds_large_images.xml")
