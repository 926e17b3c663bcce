"""
``tvf``: one console script for every tool (``python -m thermal_visible_fusion`` too).

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules are imported only when their command runs, so
``tvf metrics`` never pays for rclpy or torch start-up it does not need.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("thermal_visible_fusion.ros.demo", "run the node on a synthetic or recorded scene"),
    "fuse": ("thermal_visible_fusion.tools.fuse", "fuse an mp4 pair or two frame folders offline"),
    "metrics": ("thermal_visible_fusion.tools.metrics_cli",
                "fusion quality metrics of fused images"),
    "benchmark-quality": ("thermal_visible_fusion.tools.benchmark_quality",
                          "every fuser over clips, long videos or VIFB stills: metric tables"),
    "benchmark": ("thermal_visible_fusion.ros.benchmark",
                  "throughput and latency of the running node"),
    "benchmark-core": ("thermal_visible_fusion.tools.benchmark_core",
                       "engine fps per fuser, diagnostics and metric cost (CPU or GPU)"),
    "train": ("thermal_visible_fusion.training.train", "train the streaming fusion network"),
    "make-bag": ("thermal_visible_fusion.tools.make_bag",
                 "write an mp4 pair or two frame folders into a rosbag2 bag"),
    "evaluate": ("thermal_visible_fusion.tools.evaluate",
                 "fuse a bag offline like the node; fused bag, metrics report and plots"),
    "soak": ("thermal_visible_fusion.ros.soak",
             "run the node for N frames; RSS, counts, latency and errors as JSON"),
    "replay": ("thermal_visible_fusion.ros.replay",
               "publish a bag's images over ROS 2 in real time (no ros2 bag play needed)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvf", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text).set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Parse the command first, then let its module add its own arguments.
    known, _ = parser.parse_known_args(argv[:1] or ["--help"])
    module = importlib.import_module(known._module)
    command_parser = argparse.ArgumentParser(prog=f"tvf {known.command}",
                                             description=COMMANDS[known.command][1])
    module.add_arguments(command_parser)
    return int(module.main(command_parser.parse_args(argv[1:])) or 0)
