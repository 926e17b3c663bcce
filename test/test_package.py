"""
Static checks of the ament_python packaging (no build, no ROS needed).

``launch`` / ``launch_ros`` are not installable everywhere the tests run, so the
launch file is checked by reading it: its package name, executables and the
shared files it loads must match what package.xml and setup.py actually ship.
"""

from __future__ import annotations

import ast
import configparser
import json
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "fusion.launch.py"
NODE_SOURCE = REPO / "thermal_visible_fusion" / "ros" / "fusion_node.py"

LAUNCH_ARGUMENTS = {"thermal_topic", "rgb_topic", "thermal_info_topic", "rgb_info_topic",
                    "params_file", "use_sim_time", "device", "namespace", "rviz"}
# run-time imports -> rosdep keys; anything else the package imports comes from pip
# (torch, rosbags, matplotlib, ...: README) or the standard library
SYSTEM_MODULES = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml"}
NOT_DEPENDED_ON = {"cv_bridge", "message_filters", "rviz2"}  # unused, or optional (rviz2)
ROS_PYTHON_PACKAGES = {"rclpy", "launch", "launch_ros", "ament_index_python"}
SHM_SEGMENT_MIN = 32 * 1024 * 1024


# ----------------------------------------------------------------------------- helpers

def package_xml() -> ET.Element:
    return ET.parse(REPO / "package.xml").getroot()


def package_name() -> str:
    return package_xml().findtext("name").strip()


SETUP_PROBE = """
import json, sys, setuptools
from distutils.core import run_setup
dist = run_setup("setup.py", stop_after="config")
json.dump({"name": dist.get_name(), "version": dist.get_version(),
           "data_files": dist.data_files, "entry_points": dist.entry_points}, sys.stdout)
"""


@pytest.fixture(scope="module")
def distribution() -> dict:
    """
    Evaluate setup.py up to its configuration (no command runs, nothing is written).

    In its own folder, as colcon runs it (its globs are relative).
    """
    result = subprocess.run([sys.executable, "-c", SETUP_PROBE], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def data_files(distribution) -> dict[str, set[str]]:
    """Map each install folder to the repo-relative files setup.py installs there."""
    installed: dict[str, set[str]] = {}
    for folder, files in distribution["data_files"]:
        installed.setdefault(folder, set()).update(files)
    return installed


@pytest.fixture(scope="module")
def console_scripts(distribution) -> dict[str, str]:
    scripts = {}
    for line in distribution["entry_points"]["console_scripts"]:
        name, target = (part.strip() for part in line.split("=", 1))
        scripts[name] = target
    return scripts


class LaunchFile:
    """What fusion.launch.py references, read from its syntax tree."""

    def __init__(self, path: Path):
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants = {
            target.id: node.value.value
            for node in self.tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for target in node.targets if isinstance(target, ast.Name)
        }
        self.calls = [node for node in ast.walk(self.tree) if isinstance(node, ast.Call)]

    def value(self, node: ast.AST):
        """Return a string constant, or a module-level string constant's value; else None."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        return None

    def calls_to(self, name: str) -> list[ast.Call]:
        return [call for call in self.calls if _call_name(call) == name]

    def share_variables(self) -> dict[str, str]:
        """Map variable to package name, for ``x = get_package_share_directory(...)``."""
        found = {}
        for node in ast.walk(self.tree):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and _call_name(node.value) == "get_package_share_directory"):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = self.value(node.value.args[0])
        return found

    def share_paths(self) -> list[str]:
        """Relative paths joined under the share folder: os.path.join(share, 'a', 'b')."""
        shares = self.share_variables()
        paths = []
        for call in self.calls_to("os.path.join"):
            if call.args and isinstance(call.args[0], ast.Name) and call.args[0].id in shares:
                parts = [self.value(arg) for arg in call.args[1:]]
                assert all(isinstance(p, str) for p in parts), ast.unparse(call)
                paths.append("/".join(parts))
        return paths


def _call_name(call: ast.Call) -> str:
    try:
        return ast.unparse(call.func)
    except Exception:  # pragma: no cover
        return ""


def _keyword(call: ast.Call, name: str):
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


@pytest.fixture(scope="module")
def launch_file() -> LaunchFile:
    return LaunchFile(LAUNCH_FILE)


# ----------------------------------------------------------------------------- package.xml

def test_package_xml_format_name_and_build_type():
    root = package_xml()
    assert root.tag == "package" and root.get("format") == "3"
    assert package_name() == "thermal_visible_fusion"
    assert root.findtext("export/build_type").strip() == "ament_python"
    for tag in ("version", "description", "maintainer", "license"):
        assert (root.findtext(tag) or "").strip(), f"package.xml lacks <{tag}>"


def _imported_top_level_modules() -> set[str]:
    """Top-level modules imported anywhere in the package and the launch file."""
    found = set()
    for path in [*(REPO / "thermal_visible_fusion").rglob("*.py"), LAUNCH_FILE]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def _ros_dependencies(modules: set[str]) -> set[str]:
    """
    Return the rosdep keys of imported modules.

    ROS message packages, ROS Python packages and the system Python modules of
    SYSTEM_MODULES.
    """
    keys = {SYSTEM_MODULES[m] for m in modules if m in SYSTEM_MODULES}
    keys |= {m for m in modules if m.endswith(("_msgs", "_srvs", "_interfaces"))
             or m in ROS_PYTHON_PACKAGES}
    return keys


def test_package_xml_exec_depends_are_what_the_code_imports():
    depends = {e.text.strip() for e in package_xml().iter()
               if e.tag in ("exec_depend", "depend") and e.text}
    imported = _ros_dependencies(_imported_top_level_modules())
    assert imported == depends, (f"package.xml exec_depend misses {sorted(imported - depends)}"
                                 f" and declares unused {sorted(depends - imported)}")
    assert not depends & NOT_DEPENDED_ON


def test_license_matches_package_xml_and_setup(distribution):
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License"), "LICENSE is not the MIT licence"
    assert package_xml().findtext("license").strip() == "MIT"
    setup_source = (REPO / "setup.py").read_text()
    assert 'license="MIT"' in setup_source


def test_versions_and_names_agree(distribution):
    assert distribution["name"] == package_name()
    assert distribution["version"] == package_xml().findtext("version").strip()


# ---------------------------------------------------------------------------- setup.py, setup.cfg

def test_ament_resource_marker_installed(data_files):
    name = package_name()
    marker = REPO / "resource" / name
    assert marker.is_file()
    assert f"resource/{name}" in data_files.get("share/ament_index/resource_index/packages", set())
    assert "package.xml" in data_files.get(f"share/{name}", set())


def test_setup_cfg_installs_scripts_where_ros2_run_looks():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    expected = f"$base/lib/{package_name()}"
    assert cfg.get("install", "install_scripts") == expected
    assert cfg.get("develop", "script_dir") == expected


def test_console_scripts_point_at_main_functions(console_scripts):
    assert "fusion_node" in console_scripts
    for name, target in console_scripts.items():
        module, _, function = target.partition(":")
        source = REPO / Path(*module.split(".")).with_suffix(".py")
        assert source.is_file(), f"{name}: {source} not found"
        tree = ast.parse(source.read_text())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in functions, f"{name}: {module} defines no {function}()"


# ----------------------------------------------------------------------------- launch file

def test_launch_file_is_installed(data_files):
    installed = data_files.get(f"share/{package_name()}/launch", set())
    assert "launch/fusion.launch.py" in installed


def test_launch_uses_the_package_name(launch_file):
    assert set(launch_file.share_variables().values()) == {package_name()}
    node_packages = {launch_file.value(_keyword(call, "package"))
                     for call in launch_file.calls_to("Node")}
    assert package_name() in node_packages


def test_launch_executables_are_console_scripts(launch_file, console_scripts):
    ours = [call for call in launch_file.calls_to("Node")
            if launch_file.value(_keyword(call, "package")) == package_name()]
    assert ours, "the launch file starts no node of this package"
    for call in ours:
        executable = launch_file.value(_keyword(call, "executable"))
        assert executable in console_scripts, (
            f"launch starts {executable!r}, setup.py installs {sorted(console_scripts)}")


def test_launch_share_files_exist_and_are_installed(launch_file, data_files):
    paths = set(launch_file.share_paths())
    assert paths >= {"config/fusion.yaml", "config/fastdds_large_images.xml", "rviz/fusion.rviz"}
    for relative in paths:
        assert (REPO / relative).is_file(), f"launch loads {relative}, not in the repository"
        folder = str(Path(relative).parent)
        installed = data_files.get(f"share/{package_name()}/{folder}", set())
        assert relative in installed, f"launch loads {relative}, setup.py does not install it"


def test_launch_arguments(launch_file):
    declared = [launch_file.value(call.args[0])
                for call in launch_file.calls_to("DeclareLaunchArgument")]
    assert sorted(declared) == sorted(LAUNCH_ARGUMENTS)
    used = {launch_file.value(call.args[0]) for call in launch_file.calls
            if _call_name(call) in ("LaunchConfiguration", "config") and call.args}
    assert used <= LAUNCH_ARGUMENTS, f"undeclared launch arguments used: {used - LAUNCH_ARGUMENTS}"


# ----------------------------------------------------------------------------- rviz / Fast DDS

def test_rviz_config_shows_inputs_and_fused_image(launch_file):
    """
    Check rviz/fusion.rviz shows the node's default names in the root namespace.

    The launch file remaps exactly those to the topics it was given (RVIZ_TOPICS).
    """
    config = yaml.safe_load((REPO / "rviz" / "fusion.rviz").read_text())
    displays = [d for d in config["Visualization Manager"]["Displays"]
                if d["Class"] == "rviz_default_plugins/Image"]
    assert len(displays) == 3
    by_topic = {d["Topic"]["Value"]: d for d in displays}
    rviz_topics = next(ast.literal_eval(node.value) for node in launch_file.tree.body
                       if isinstance(node, ast.Assign)
                       and any(getattr(t, "id", "") == "RVIZ_TOPICS" for t in node.targets))
    assert set(by_topic) == set(rviz_topics) == {"/thermal/image_raw", "/rgb/image_raw",
                                                 "/fused/image_raw"}
    node_source = NODE_SOURCE.read_text()
    assert '"fused/image_raw"' in node_source and '/image_raw"' in node_source
    for topic in ("/thermal/image_raw", "/rgb/image_raw"):  # camera topics: best effort
        assert by_topic[topic]["Topic"]["Reliability Policy"] == "Best Effort"
    assert all(d.get("Enabled", True) for d in displays)


def test_fastdds_profile_has_large_shm_segment():
    root = ET.parse(REPO / "config" / "fastdds_large_images.xml").getroot()
    ns = {"d": "http://www.eprosima.com"}
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns)
           if (t.findtext("d:type", namespaces=ns) or "").strip() == "SHM"]
    assert shm, "no SHM transport descriptor"
    large = [t for t in shm if int(t.findtext("d:segment_size", "0", ns)) >= SHM_SEGMENT_MIN]
    assert large, "SHM segment_size below 32 MB"
    ids = {t.findtext("d:transport_id", namespaces=ns).strip() for t in large}
    # the participant profile must actually use it, as the default profile
    participants = [p for p in root.iterfind(".//d:participant", ns)
                    if p.get("is_default_profile") == "true"]
    assert participants, "no default participant profile"
    used = {e.text.strip() for p in participants
            for e in p.iterfind(".//d:userTransports/d:transport_id", ns)}
    assert ids & used, "the large SHM transport is not in the default participant's transports"
