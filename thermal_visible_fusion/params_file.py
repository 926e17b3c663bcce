"""
Checks of a node parameters file (``--params-file``) before and after start-up (ROS-free).

rclpy applies a params file silently: a misspelt name, a nested value or a section keyed
to another node name leaves the node on its defaults without a word, and a YAML error or
a missing file ends in a traceback inside ``rclpy.init``.  The node reads each file itself
first, so these become one line each: an error (exit status 2) or a WARN.
"""

from __future__ import annotations

from pathlib import Path
import re
from typing import Iterable

# Parameters rclpy itself declares or reads from a params file.
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_PARAMETER_PREFIXES = ("qos_overrides.",)


class ParamsFileError(ValueError):
    """A params file is missing, unreadable or not a ROS 2 parameters mapping."""


def params_files(argv: Iterable[str]) -> list[Path]:
    """Return the files given as ``--params-file FILE`` inside ``--ros-args`` sections."""
    files, in_ros_args, argv = [], False, list(argv)
    for index, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg == "--params-file" and index + 1 < len(argv):
            files.append(Path(argv[index + 1]))
    return files


def load(path: Path) -> dict:
    """Load the file's mapping; ``ParamsFileError`` with a one-line reason otherwise."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsFileError(f"params file not found: {path}") from None
    except OSError as error:
        raise ParamsFileError(f"cannot read params file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ParamsFileError(f"params file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsFileError(f"params file {path} is not a mapping of node names")
    return data


def sections(data: dict) -> dict[str, dict]:
    """``{node name pattern: ros__parameters}``; nested namespace keys are joined by '/'."""
    found: dict[str, dict] = {}

    def visit(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if not isinstance(value, dict):
                continue
            name = f"{prefix}/{str(key).strip('/')}"
            if "ros__parameters" in value:
                found[name] = value["ros__parameters"] or {}
            visit({k: v for k, v in value.items() if k != "ros__parameters"}, name)

    visit(data, "")
    return found


def matches(pattern: str, node_name: str) -> bool:
    """Apply rcl's rule: ``/**`` is any number of namespace levels, ``*`` one name."""
    regex = "".join("(/.*)?" if token == "/**" else "/[^/]*" if token == "/*" else re.escape(token)
                    for token in re.split(r"(/\*\*|/\*)", pattern))
    return re.fullmatch(regex, node_name) is not None


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested mappings become dotted names, as rcl reads them."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def problems(path: Path, data: dict, node_name: str, known: Iterable[str]) -> list[str]:
    """Warnings about a loaded params file for the node ``node_name`` (fully qualified)."""
    mine = {name: values for name, values in sections(data).items()
            if matches(name, node_name)}
    if not mine:
        listed = ", ".join(sorted(sections(data))) or "none"
        return [f"params file {path} has no section for node {node_name} (sections: {listed}); "
                "none of its parameters are used"]
    known = set(known) | set(ROS_PARAMETERS)
    unknown = sorted({name for values in mine.values() if isinstance(values, dict)
                      for name in flatten(values)
                      if name not in known and not name.startswith(ROS_PARAMETER_PREFIXES)})
    if unknown:
        return [f"params file {path}: unknown parameter(s) for {node_name} ignored: "
                f"{', '.join(unknown)}"]
    return []
