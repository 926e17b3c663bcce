"""tvf make-bag and tvf evaluate: bags written and read back with rosbags (no ROS needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from thermal_visible_fusion.cli import main as tvf  # noqa: E402
from thermal_visible_fusion.data.synthetic import SyntheticScene  # noqa: E402
from thermal_visible_fusion.tools import bag_io  # noqa: E402
from thermal_visible_fusion.tools.evaluate import TEMPORAL_KEYS  # noqa: E402
from thermal_visible_fusion.tools.make_bag import DEFAULT_START_SEC  # noqa: E402

W, H, FRAMES = 160, 120, 12
START_NS = round(DEFAULT_START_SEC * 1e9)

CALIBRATION = """\
thermal:
  image_width: 160
  image_height: 120
  camera_name: thermal_cam
  camera_matrix: {rows: 3, cols: 3, data: [200.0, 0.0, 80.0, 0.0, 200.0, 60.0, 0.0, 0.0, 1.0]}
  distortion_model: plumb_bob
  distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0.0, 0.0, 0.0]}
  rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
  projection_matrix: {rows: 3, cols: 4, data: [200.0, 0, 80.0, 0, 0, 200.0, 60.0, 0, 0, 0, 1, 0]}
rgb:
  image_width: 160
  image_height: 120
  camera_name: rgb_cam
  camera_matrix: {rows: 3, cols: 3, data: [150.0, 0.0, 80.0, 0.0, 150.0, 60.0, 0.0, 0.0, 1.0]}
  distortion_model: plumb_bob
  distortion_coefficients: {rows: 1, cols: 5, data: [0.0, 0.0, 0.0, 0.0, 0.0]}
  rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
  projection_matrix: {rows: 3, cols: 4, data: [150.0, 0, 80.0, 0, 0, 150.0, 60.0, 0, 0, 0, 1, 0]}
"""


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Make a tiny registered pair as two folders of PNGs."""
    root = tmp_path_factory.mktemp("frames")
    scene = SyntheticScene(W, H, seed=3)
    (root / "ir").mkdir()
    (root / "vis").mkdir()
    for i in range(FRAMES):
        thermal, rgb = scene.frame(i)
        cv2.imwrite(str(root / "ir" / f"{i}.png"), thermal)
        cv2.imwrite(str(root / "vis" / f"{i}.png"), rgb)
    return root


def make_bag(frames: Path, out: Path, *extra: str) -> Path:
    assert tvf(["make-bag", "--ir", str(frames / "ir"), "--rgb", str(frames / "vis"),
                "--out", str(out), *extra]) == 0
    return out


def read_all(bag: Path) -> dict[str, list]:
    """{topic: [(log_time, deserialized message)]} in log-time order."""
    store = bag_io.typestore()
    out: dict[str, list] = {}
    reader = bag_io.open_reader(bag)
    try:
        last = -1
        for connection, log_time, raw in reader.messages():
            assert log_time >= last, "messages not in log-time order"
            last = log_time
            out.setdefault(connection.topic, []).append(
                (log_time, store.deserialize_cdr(raw, connection.msgtype)))
    finally:
        reader.close()
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_plain(frames, tmp_path, storage):
    bag = make_bag(frames, tmp_path / "bag", "--storage", storage, "--fps", "20")
    meta = (bag / "metadata.yaml").read_text()
    assert f"storage_identifier: {storage}" in meta
    topics = bag_io.bag_topics(bag)
    assert topics == {"/thermal/image_raw": (bag_io.IMAGE, FRAMES),
                      "/rgb/image_raw": (bag_io.IMAGE, FRAMES)}
    messages = read_all(bag)
    expected = [START_NS + round(i * 1e9 / 20) for i in range(FRAMES)]
    for topic, encoding, frame_id in (("/thermal/image_raw", "mono8", "thermal_optical"),
                                      ("/rgb/image_raw", "bgr8", "rgb_optical")):
        msgs = messages[topic]
        assert [bag_io.stamp_ns_of(m) for _, m in msgs] == expected
        assert all(log == bag_io.stamp_ns_of(m) for log, m in msgs)  # log time = stamp
        assert {m.encoding for _, m in msgs} == {encoding}
        assert {m.header.frame_id for _, m in msgs} == {frame_id}
        assert {(m.width, m.height) for _, m in msgs} == {(W, H)}
    # pixels survive the round trip through the bag
    first = next(bag_io.read_images(bag, ["/rgb/image_raw"]))
    np.testing.assert_array_equal(first.image, cv2.imread(str(frames / "vis" / "0.png")))
    thermal = next(bag_io.read_images(bag, ["/thermal/image_raw"],
                                      {"/thermal/image_raw": "thermal"}))
    np.testing.assert_array_equal(thermal.image,
                                  cv2.imread(str(frames / "ir" / "0.png"), cv2.IMREAD_UNCHANGED))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_offset_jitter_calibration(frames, tmp_path, storage):
    calibration = tmp_path / "cameras.yaml"
    calibration.write_text(CALIBRATION)
    bag = make_bag(frames, tmp_path / "bag", "--storage", storage, "--offset-ms", "7",
                   "--jitter-ms", "2", "--seed", "5", "--frames", "10",
                   "--calibration", str(calibration), "--thermal-topic", "/cam/lwir/image_raw")
    messages = read_all(bag)
    assert set(messages) == {"/cam/lwir/image_raw", "/cam/lwir/camera_info",
                             "/rgb/image_raw", "/rgb/camera_info"}
    assert all(len(v) == 10 for v in messages.values())
    period = 1e9 / 30  # folders have no frame rate: the default 30 fps
    thermal = [bag_io.stamp_ns_of(m) for _, m in messages["/cam/lwir/image_raw"]]
    rgb = [bag_io.stamp_ns_of(m) for _, m in messages["/rgb/image_raw"]]
    for i, (t, r) in enumerate(zip(thermal, rgb)):
        nominal = START_NS + i * period
        assert abs(r - nominal) <= 2e6 + 1
        assert abs(t - (nominal + 7e6)) <= 2e6 + 1
    assert np.diff(thermal).min() > 0 and np.diff(rgb).min() > 0
    assert np.std(np.array(rgb) - (START_NS + np.arange(10) * period)) > 1e5  # jitter is there
    # CameraInfo beside each image: same stamp and frame_id, contents from the YAML
    for image_topic, info_topic, name_k in (
            ("/cam/lwir/image_raw", "/cam/lwir/camera_info", 200.0),
            ("/rgb/image_raw", "/rgb/camera_info", 150.0)):
        images, infos = messages[image_topic], messages[info_topic]
        stamps = [bag_io.stamp_ns_of(m) for _, m in images]
        assert [bag_io.stamp_ns_of(m) for _, m in infos] == stamps
        info = infos[0][1]
        assert info.header.frame_id == images[0][1].header.frame_id
        assert (info.width, info.height, info.distortion_model) == (W, H, "plumb_bob")
        assert info.k[0] == name_k and len(info.d) == 5 and len(info.p) == 12
    # the same seed gives the same stamps
    again = make_bag(frames, tmp_path / "again", "--storage", storage, "--offset-ms", "7",
                     "--jitter-ms", "2", "--seed", "5", "--frames", "10")
    assert [bag_io.stamp_ns_of(m) for _, m in read_all(again)["/rgb/image_raw"]] == rgb


def test_make_bag_rejects_bad_input(frames, tmp_path, capsys):
    args = ["make-bag", "--ir", str(frames / "ir"), "--rgb", str(frames / "vis")]
    assert tvf(args + ["--out", str(tmp_path / "a"), "--jitter-ms", "20"]) == 2  # > period / 2
    assert tvf(args + ["--out", str(tmp_path / "b"), "--ir", str(tmp_path / "missing")]) == 2
    make_bag(frames, tmp_path / "c", "--frames", "2")
    assert tvf(args + ["--out", str(tmp_path / "c")]) == 2  # exists already
    assert "error" in capsys.readouterr().err


def test_guess_pair_topics():
    guess = bag_io.guess_pair_topics
    assert guess(["/thermal/image_raw", "/rgb/image_raw"]) == (
        "/thermal/image_raw", "/rgb/image_raw")
    assert guess(["/cam/color/image_raw", "/flir/ir/image_raw", "/fused/image_raw"]) == (
        "/flir/ir/image_raw", "/cam/color/image_raw")
    assert guess(["/a/infrared", "/b/visible/image_raw", "/b/visible/image_rect"]) == (
        "/a/infrared", "/b/visible/image_raw")
    assert guess(["/x", "/y"], thermal="/x", rgb="/y") == ("/x", "/y")
    with pytest.raises(ValueError, match="thermal"):
        guess(["/camera/image_raw", "/rgb/image_raw"])
    with pytest.raises(ValueError, match="not an image topic"):
        guess(["/thermal/image_raw"], rgb="/nope")


def _evaluate(bag: Path, out: Path, *extra: str) -> dict:
    assert tvf(["evaluate", str(bag), "--out", str(out), "--fuser", "multiscale", *extra]) == 0
    return json.loads((out / "report.json").read_text())


def test_evaluate_bag_with_offset(frames, tmp_path):
    # Thermal 6 ms after RGB: within the node's 15 ms slop, so every frame pairs
    # (the last pair only at flush).
    bag = make_bag(frames, tmp_path / "bag", "--offset-ms", "6", "--jitter-ms", "1")
    out = tmp_path / "eval"
    report = _evaluate(bag, out, "--metrics-every", "4")
    for name in ("report.json", "report.md", "frames.csv", "samples.png"):
        assert (out / name).is_file(), name
    if _has_matplotlib():
        assert (out / "metrics_over_time.png").stat().st_size > 1000
    assert cv2.imread(str(out / "samples.png")) is not None

    assert report["frames"] == FRAMES
    assert report["fuser"] == "multiscale" and report["device"] == "cpu"
    assert report["pairing"]["thermal"]["paired"] == FRAMES
    assert report["pairing"]["rgb"]["dropped_unmatched"] == 0
    metrics = report["metrics"]
    for name in ("temporal_error_fused", "temporal_error_thermal", "temporal_error_rgb",
                 "brightness_flicker", "fuse_ms", "stamp_skew_ms"):
        stats = metrics[name]
        assert stats["count"] >= FRAMES - 1, name
        assert stats["p5"] <= stats["p50"] <= stats["p95"], name
    assert -8 < metrics["stamp_skew_ms"]["mean"] < -4  # skew = RGB - thermal stamp
    image_metrics = [k for k in metrics if k.isupper() or k in ("Qabf", "Nabf")]
    if image_metrics:  # metrics.image present: every 4th frame
        assert metrics[image_metrics[0]]["count"] == math.ceil(FRAMES / 4)
    assert "| temporal_error_fused |" in (out / "report.md").read_text()

    # output bag: inputs copied, one fused image + diagnostics per pair, RGB stamps/frame_id
    messages = read_all(out / "fused_bag")
    assert len(messages["/thermal/image_raw"]) == len(messages["/rgb/image_raw"]) == FRAMES
    rgb_stamps = [bag_io.stamp_ns_of(m) for _, m in messages["/rgb/image_raw"]]
    fused = messages["/fused/image_raw"]
    diagnostics = messages["/fused/temporal_consistency"]
    assert [bag_io.stamp_ns_of(m) for _, m in fused] == rgb_stamps
    assert [bag_io.stamp_ns_of(m) for _, m in diagnostics] == rgb_stamps
    assert {m.header.frame_id for _, m in fused} == {"rgb_optical"}
    assert {(m.encoding, m.width, m.height) for _, m in fused} == {("bgr8", W, H)}
    status = diagnostics[1][1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert tuple(values) == TEMPORAL_KEYS
    assert float(values["temporal_error_fused"]) >= 0 and values["memory_reset"] == ""
    # as the node: a value not measured (the first frame has no previous one) is left out,
    # hardware_id is the RGB camera's frame_id, the name the node's fully qualified one
    first = {kv.key for kv in diagnostics[0][1].status[0].values}
    assert first == set(TEMPORAL_KEYS) - {"temporal_error_fused", "temporal_error_thermal",
                                          "temporal_error_rgb", "brightness_flicker"}
    assert status.hardware_id == "rgb_optical"
    assert status.name == "/fusion_node: temporal consistency"


def test_evaluate_pairing_follows_stamps(frames, tmp_path):
    # Thermal 25 ms after RGB at 30 fps: each thermal frame is nearest (8.3 ms) to the
    # *next* RGB frame, within the default 15 ms slop; the first RGB and last thermal
    # frame have no partner.
    bag = make_bag(frames, tmp_path / "bag", "--offset-ms", "25", "--frames", "6")
    report = _evaluate(bag, tmp_path / "default", "--metrics-every", "0", "--samples", "0")
    assert report["frames"] == 5
    assert report["pairing"]["thermal"]["dropped_unmatched"] == 1
    assert report["pairing"]["rgb"]["dropped_unmatched"] == 1
    assert all(8 < v < 9 for v in _skews(tmp_path / "default"))
    assert not (tmp_path / "default" / "samples.png").exists()
    # A 5 ms slop pairs nothing: reported, exit status 1.
    out = tmp_path / "strict"
    assert tvf(["evaluate", str(bag), "--out", str(out), "--fuser", "average",
                "--slop-ms", "5", "--metrics-every", "0"]) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 0
    assert report["pairing"]["thermal"]["dropped_unmatched"] == 6
    assert report["metrics"]["temporal_error_fused"]["count"] == 0
    # an existing output bag is kept unless --force
    assert tvf(["evaluate", str(bag), "--out", str(out), "--fuser", "average"]) == 2
    assert tvf(["evaluate", str(bag), "--out", str(out), "--fuser", "average", "--force",
                "--metrics-every", "0"]) == 0


def test_evaluate_lookahead_keeps_each_frame_with_its_pair(frames, tmp_path, request):
    pytest.importorskip("torch")
    weights = request.getfixturevalue("fresh_weights")  # memory (and look-ahead) matter
    pairs = 8
    bag = make_bag(frames, tmp_path / "bag", "--offset-ms", "6", "--frames", str(pairs))
    base = ["evaluate", str(bag), "--weights", str(weights), "--device", "cpu",
            "--metrics-every", "0", "--samples", "0"]
    # look-ahead needs the learned fuser with its memory
    assert tvf(base + ["--out", str(tmp_path / "x"), "--fuser", "multiscale",
                       "--lookahead", "2"]) == 2
    assert tvf(base + ["--out", str(tmp_path / "y"), "--fuser", "learned", "--no-memory",
                       "--lookahead", "2"]) == 2
    assert tvf(base + ["--out", str(tmp_path / "plain"), "--fuser", "learned"]) == 0
    assert tvf(base + ["--out", str(tmp_path / "ahead"), "--fuser", "learned",
                       "--lookahead", "2"]) == 0
    report = json.loads((tmp_path / "ahead" / "report.json").read_text())
    assert report["fuser"] == "learned" and report["frames"] == pairs
    assert report["config"]["lookahead"] == 2

    outputs = {}
    for name in ("plain", "ahead"):
        messages = read_all(tmp_path / name / "fused_bag")  # asserts log-time order too
        rgb = messages["/rgb/image_raw"]
        fused = messages["/fused/image_raw"]
        diagnostics = messages["/fused/temporal_consistency"]
        assert len(fused) == len(diagnostics) == pairs
        # every fused frame under its own pair's RGB stamp, frame_id and log time
        assert [bag_io.stamp_ns_of(m) for _, m in fused] == [bag_io.stamp_ns_of(m) for _, m in rgb]
        assert [log for log, _ in fused] == [log for log, _ in rgb]
        assert [bag_io.stamp_ns_of(m) for _, m in diagnostics] == [bag_io.stamp_ns_of(m)
                                                                   for _, m in rgb]
        assert {m.header.frame_id for _, m in fused} == {"rgb_optical"}
        outputs[name] = [bag_io.decode_image_message(m, "rgb") for _, m in fused]
    plain, ahead = outputs["plain"], outputs["ahead"]
    # the last frame has no later frames to look at: identical to the plain output of the
    # same pair (so the frames are not shifted); earlier frames used their look-ahead
    np.testing.assert_array_equal(ahead[-1], plain[-1])
    assert all(not np.array_equal(a, p) for a, p in zip(ahead[:-1], plain[:-1]))


def test_evaluate_drops_frames_over_max_pixels(frames, tmp_path):
    bag = make_bag(frames, tmp_path / "bag", "--frames", "3")
    params = tmp_path / "params.yaml"
    params.write_text("fusion_node:\n  ros__parameters:\n    max_pixels: %d\n" % (W * H - 1))
    out = tmp_path / "eval"
    assert tvf(["evaluate", str(bag), "--out", str(out), "--fuser", "average",
                "--params", str(params), "--metrics-every", "0"]) == 1  # nothing left to fuse
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 0
    assert report["input_errors"] == report["oversize_frames"] == {"thermal": 3, "rgb": 3}


def test_evaluate_replays_a_looping_bag_like_the_node(tmp_path):
    """
    Evaluate replays a looping bag as the node does.

    A bag recorded from a looping source (``ros2 bag play --loop`` re-recorded): the
    stamps jump back, and RGB, delivered a frame later than thermal, still sends a frame
    of the old loop after thermal started the new one.  As the live node: pairing and
    memory restart once, the old-loop RGB frame is dropped as stale, every pair of the
    new loop is fused, and nothing counts as a bad frame.
    """
    scene = SyntheticScene(W, H, seed=2)
    period, frames = 33_333_333, 20  # a loop of 0.67 s: a jump back over max_stamp_gap
    bag = tmp_path / "bag"
    with bag_io.BagWriter(bag, reorder=True) as writer:
        for loop in range(2):
            for i in range(frames):
                thermal, rgb = scene.frame(loop * frames + i)
                stamp = START_NS + i * period  # the second loop's stamps start again
                log = START_NS + (loop * frames + i) * period
                writer.write_image("/thermal/image_raw", thermal, stamp, "thermal_optical",
                                   log_time_ns=log)
                writer.write_image("/rgb/image_raw", rgb, stamp + 5_000_000, "rgb_optical",
                                   log_time_ns=log + 40_000_000)  # after the next thermal
    report = _evaluate(bag, tmp_path / "eval", "--metrics-every", "0", "--samples", "0")
    # the first loop's last thermal frame waited for its RGB frame when the stamps jumped back:
    # dropped with the restart, and that RGB frame, arriving in the new loop, as stale
    assert report["frames"] == 2 * frames - 1
    stamps = [int(s) for s in _column(tmp_path / "eval", "thermal_stamp_ns")]
    assert stamps == [START_NS + i * period for i in [*range(frames - 1), *range(frames)]]
    assert report["source_restarts"] == {"thermal": 1, "rgb": 1}
    assert report["input_errors"] == {}
    assert report["inputs"]["rgb"]["stale_after_restart"] == 1
    assert report["inputs"]["thermal"]["pairing_dropped_reset"] == 1
    assert report["reset_reasons"] == {"stamps went backwards": 1}


def _column(out: Path, name: str) -> list[str]:
    import csv
    with open(out / "frames.csv") as handle:
        return [row[name] for row in csv.DictReader(handle)]


def _skews(out: Path) -> list[float]:
    import csv
    with open(out / "frames.csv") as handle:
        return [float(row["stamp_skew_ms"]) for row in csv.DictReader(handle)]


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_shared_clip_make_bag_and_evaluate(shared_data, tmp_path):
    clips = sorted(p for p in (shared_data / "m3svd" / "clips").iterdir() if p.is_dir())
    if not clips:
        pytest.skip("no m3svd clips")
    clip = clips[0]
    bag = tmp_path / "clip_bag"
    assert tvf(["make-bag", "--ir", str(clip / "ir"), "--rgb", str(clip / "vis"), "--out",
                str(bag),
                "--frames", "20", "--offset-ms", "3"]) == 0
    assert bag_io.image_topics(bag) == {"/thermal/image_raw": 20, "/rgb/image_raw": 20}
    report = _evaluate(bag, tmp_path / "eval", "--metrics-every", "10")
    assert report["frames"] == 20
    assert report["metrics"]["temporal_error_fused"]["count"] == 19
    assert 0 < report["metrics"]["temporal_error_fused"]["mean"] < 30


def test_make_bag_one_camera_calibration_file(frames, tmp_path, capsys):
    import yaml
    one = tmp_path / "rgb.yaml"
    one.write_text(yaml.safe_dump(yaml.safe_load(CALIBRATION)["rgb"]))
    bag = make_bag(frames, tmp_path / "bag", "--frames", "3", "--rgb-calibration", str(one))
    assert bag_io.bag_topics(bag)["/rgb/camera_info"] == (bag_io.CAMERA_INFO, 3)
    assert "/thermal/camera_info" not in bag_io.bag_topics(bag)
    assert tvf(["make-bag", "--ir", str(frames / "ir"), "--rgb", str(frames / "vis"),
                "--out", str(tmp_path / "x"), "--calibration", str(one)]) == 2
    assert "one camera" in capsys.readouterr().err


# ------------------------------------------------------------- compressed bags


def test_make_bag_compressed_round_trip(frames, tmp_path):
    bag = make_bag(frames, tmp_path / "bag", "--compressed", "--jpeg-quality", "95",
                   "--frames", "3")
    assert bag_io.bag_topics(bag) == {
        "/thermal/image_raw/compressed": (bag_io.COMPRESSED_IMAGE, 3),
        "/rgb/image_raw/compressed": (bag_io.COMPRESSED_IMAGE, 3)}
    messages = read_all(bag)
    rgb = [m for _, m in messages["/rgb/image_raw/compressed"]]
    assert {m.format for m in rgb} == {"bgr8; jpeg compressed bgr8"}  # image_transport's
    assert {m.header.frame_id for m in rgb} == {"rgb_optical"}
    assert [bag_io.stamp_ns_of(m) for m in rgb] == [START_NS + round(i * 1e9 / 30)
                                                    for i in range(3)]
    # pixels come back close to the frames (JPEG), colours in BGR order
    first = next(bag_io.read_images(bag, ["/rgb/image_raw/compressed"],
                                    {"/rgb/image_raw/compressed": "rgb"}))
    original = cv2.imread(str(frames / "vis" / "0.png"))
    assert first.encoding == "bgr8; jpeg compressed bgr8" and first.image.shape == original.shape
    error = np.abs(first.image.astype(int) - original).mean()  # the noisy scene costs JPEG ~4
    assert error < 6 and np.abs(first.image[..., ::-1].astype(int) - original).mean() > 2 * error
    thermal = next(bag_io.read_images(bag, ["/thermal/image_raw/compressed"],
                                      {"/thermal/image_raw/compressed": "thermal"}))
    assert thermal.image.shape == (H, W) and thermal.image.dtype == np.uint8


def test_bag_writer_16bit_thermal_compressed_is_lossless(tmp_path):
    ramp = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 3 + 20000).astype(np.uint16)
    with bag_io.BagWriter(tmp_path / "bag") as writer:
        writer.write_image("/thermal/image_raw/compressed", ramp, START_NS, "thermal_optical",
                           compressed=True)
    [image] = bag_io.read_images(tmp_path / "bag",
                                 roles={"/thermal/image_raw/compressed": "thermal"})
    assert image.encoding == "mono16; png compressed "
    assert image.image.dtype == np.uint16
    np.testing.assert_array_equal(image.image, ramp)


def test_guess_pair_topics_prefers_image_over_its_compressed_copy():
    topics = ["/thermal/image_raw", "/thermal/image_raw/compressed",
              "/rgb/image_raw", "/rgb/image_raw/compressed", "/fused/image_raw"]
    assert bag_io.guess_pair_topics(topics) == ("/thermal/image_raw", "/rgb/image_raw")
    compressed_only = ["/thermal/image_raw/compressed", "/rgb/image_raw/compressed"]
    assert bag_io.guess_pair_topics(compressed_only) == tuple(compressed_only)


def test_image_transport_topic_names():
    """The one definition replay plans its routes with."""
    assert bag_io.base_topic("/rgb/image_raw/compressed") == "/rgb/image_raw"
    assert bag_io.base_topic("/depth/image_raw/compressedDepth") == "/depth/image_raw"
    for unchanged in ("/rgb/image_raw", "/compressed", "/rgb/image_raw/zstd",
                      "/rgb/image_raw/compressed/"):
        assert bag_io.base_topic(unchanged) == unchanged
    assert bag_io.compressed_topic("/rgb/image_raw") == "/rgb/image_raw/compressed"
    assert bag_io.compressed_topic("/rgb/image_raw/") == "/rgb/image_raw/compressed"


def _fused_images(bag: Path, topic: str) -> list[tuple[int, np.ndarray]]:
    return [(bag_io.stamp_ns_of(m), bag_io.decode_image_message(m, "rgb"))
            for _, m in read_all(bag)[topic]]


def test_evaluate_compressed_input_and_output(frames, tmp_path):
    raw_bag = make_bag(frames, tmp_path / "raw", "--offset-ms", "5", "--frames", "6")
    jpeg_bag = make_bag(frames, tmp_path / "jpeg", "--offset-ms", "5", "--frames", "6",
                        "--compressed", "--jpeg-quality", "95")
    quiet = ("--metrics-every", "0", "--samples", "0")
    raw = _evaluate(raw_bag, tmp_path / "eval_raw", *quiet)
    report = _evaluate(jpeg_bag, tmp_path / "eval_jpeg", *quiet, "--compressed",
                       "--jpeg-quality", "95")
    assert (report["thermal_topic"], report["rgb_topic"]) == (
        "/thermal/image_raw/compressed", "/rgb/image_raw/compressed")
    assert report["frames"] == raw["frames"] == 6 and report["input_errors"] == {}
    assert report["fused_topic"] == "/fused/image_raw/compressed"

    out = read_all(tmp_path / "eval_jpeg" / "fused_bag")
    assert "/fused/image_raw" not in out
    fused = out["/fused/image_raw/compressed"]
    assert {m.format for _, m in fused} == {"bgr8; jpeg compressed bgr8"}
    rgb_stamps = [bag_io.stamp_ns_of(m) for _, m in out["/rgb/image_raw/compressed"]]
    assert [bag_io.stamp_ns_of(m) for _, m in fused] == rgb_stamps
    assert len(out["/fused/temporal_consistency"]) == 6
    # the same fusion as from the raw bag, up to the loss of two JPEG steps (in and
    # out; the noisy scene costs ~4 each); swapped colours would be far off
    expected = _fused_images(tmp_path / "eval_raw" / "fused_bag", "/fused/image_raw")
    got = _fused_images(tmp_path / "eval_jpeg" / "fused_bag", "/fused/image_raw/compressed")
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (_, a), (_, b) in zip(got, expected):
        error = np.abs(a.astype(int) - b).mean()
        assert error < 7 and np.abs(a[..., ::-1].astype(int) - b).mean() > 1.5 * error


def test_evaluate_replaces_fused_topics_already_in_the_bag(frames, tmp_path):
    # a bag recorded from a live node holds /fused/... already: the evaluation's own
    # outputs replace them instead of doubling every frame
    bag = make_bag(frames, tmp_path / "bag", "--frames", "4")
    quiet = ("--metrics-every", "0", "--samples", "0")
    _evaluate(bag, tmp_path / "first", *quiet)
    again = _evaluate(tmp_path / "first" / "fused_bag", tmp_path / "second", *quiet)
    assert again["frames"] == 4
    out = read_all(tmp_path / "second" / "fused_bag")
    assert len(out["/fused/image_raw"]) == len(out["/fused/temporal_consistency"]) == 4


def test_evaluate_drops_broken_compressed_frames(tmp_path):
    # corrupt, truncated and oversize compressed frames are dropped and counted, as the
    # node does; the good pairs around them are fused
    scene = SyntheticScene(W, H, seed=1)
    bag = tmp_path / "bag"
    good = []
    with bag_io.BagWriter(bag) as writer:
        for i in range(8):
            stamp = START_NS + i * 33_000_000
            thermal, rgb = scene.frame(i)
            writer.write_image("/rgb/image_raw/compressed", rgb, stamp, "rgb_optical",
                               compressed=True)
            msg = bag_io.compressed_image_message(thermal, stamp, "thermal_optical")
            if i == 2:
                msg.data = msg.data[: len(msg.data) // 2]  # truncated
            elif i == 4:
                msg.data = np.frombuffer(b"garbage" * 50, np.uint8)
            else:
                good.append(stamp)
            writer.write_message("/thermal/image_raw/compressed", msg, stamp)
    report = _evaluate(bag, tmp_path / "eval", "--metrics-every", "0", "--samples", "0")
    assert report["input_errors"] == {"thermal": 2} and report["oversize_frames"] == {}
    assert report["frames"] == len(good) == 6
    params = tmp_path / "params.yaml"
    params.write_text("fusion_node:\n  ros__parameters:\n    max_pixels: %d\n" % (W * H - 1))
    assert tvf(["evaluate", str(bag), "--out", str(tmp_path / "small"), "--fuser", "average",
                "--params", str(params), "--metrics-every", "0"]) == 1
    small = json.loads((tmp_path / "small" / "report.json").read_text())
    # the size is read from the header first: the truncated frame counts as oversize too
    assert small["oversize_frames"] == {"thermal": 7, "rgb": 8}


def test_evaluate_rejects_bad_jpeg_quality(frames, tmp_path, capsys):
    bag = make_bag(frames, tmp_path / "bag", "--frames", "2")
    assert tvf(["evaluate", str(bag), "--out", str(tmp_path / "x"), "--compressed",
                "--jpeg-quality", "0"]) == 2
    assert "jpeg_quality" in capsys.readouterr().err
    assert tvf(["make-bag", "--ir", str(frames / "ir"), "--rgb", str(frames / "vis"),
                "--out", str(tmp_path / "y"), "--compressed", "--jpeg-quality", "101"]) == 2


def test_replay_routes_per_transport():
    from types import SimpleNamespace

    from thermal_visible_fusion.ros.replay import COMPRESSED_IMAGE, IMAGE, plan_routes

    info = "sensor_msgs/msg/CameraInfo"
    both = [SimpleNamespace(topic=t, msgtype=m) for t, m in (
        ("/rgb/image_raw", IMAGE), ("/rgb/image_raw/compressed", COMPRESSED_IMAGE),
        ("/thermal/image_raw/compressed", COMPRESSED_IMAGE), ("/rgb/camera_info", info))]

    def targets(transport):
        routes, notes = plan_routes(both, transport)
        return {k[0]: (r.topic, r.msgtype, r.convert) for k, r in routes.items()}, notes

    routes, notes = targets("recorded")
    assert all(convert is None and topic == source for source, (topic, _, convert)
               in routes.items()) and len(routes) == 4 and not notes
    # raw: compressed topics decoded onto their base topic, unless the bag has it as Image
    routes, notes = targets("raw")
    assert routes == {"/rgb/image_raw": ("/rgb/image_raw", IMAGE, None),
                      "/thermal/image_raw/compressed": ("/thermal/image_raw", IMAGE, "raw"),
                      "/rgb/camera_info": ("/rgb/camera_info", info, None)}
    assert len(notes) == 1 and notes[0].startswith("/rgb/image_raw/compressed")
    routes, notes = targets("compressed")
    assert routes == {
        "/rgb/image_raw/compressed": ("/rgb/image_raw/compressed", COMPRESSED_IMAGE, None),
        "/thermal/image_raw/compressed": ("/thermal/image_raw/compressed", COMPRESSED_IMAGE,
                                          None),
        "/rgb/camera_info": ("/rgb/camera_info", info, None)}
    assert len(notes) == 1 and notes[0].startswith("/rgb/image_raw ")
