"""ament_python package: colcon installs it into a ROS 2 workspace; pip into a venv."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "thermal_visible_fusion"
SHARE = f"share/{PACKAGE}"


def share_files(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    files = sorted(p for p in glob(f"{folder}/{pattern}") if Path(p).is_file())
    return (f"{SHARE}/{folder}", files)


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (SHARE, ["package.xml"]),
        share_files("launch", "*.launch.py"),
        share_files("config"),
        share_files("rviz", "*.rviz"),
        # The learned fuser loads its weights from the Python package; a copy in share/
        # lets other tools find them with `ros2 pkg prefix`.
        (f"{SHARE}/weights", sorted(glob(f"{PACKAGE}/weights/*"))),
    ],
    python_requires=">=3.10",
    # numpy, OpenCV and torch come from the system (rosdep, apt, pip); listing them
    # here would make console scripts refuse to start beside apt-installed OpenCV.
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="thermal_visible_fusion developers",
    maintainer_email="tvf-dev@users.noreply.github.com",
    description="Live thermal + visible video fusion node with temporal-consistency diagnostics",
    license="MIT",
    extras_require={"test": ["pytest"]},  # colcon test picks pytest from this
    entry_points={
        "console_scripts": [
            "fusion_node = thermal_visible_fusion.ros.fusion_node:main",
            "scene_publisher = thermal_visible_fusion.ros.scene_publisher:main",
            "tvf = thermal_visible_fusion.cli:main",
        ],
    },
)
