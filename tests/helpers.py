"""What the tests share besides fixtures: the tiny models, the clip placements, broken inputs,
hostile names, and ways to wait on a subprocess. Tests import it as `helpers` (tests/ is on
pytest's path); fixtures stay in conftest.py.

Every video is made here with PyAV (screener.synth); nothing comes from ../shared.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

# Small clips keep the suite fast: 320x240, a dozen frames, one face of ~90 px.
from bench.clips import W, H, one_face  # noqa: E402,F401 - the clips' size and face
from bench.s3server import S3Server, free_port  # noqa: E402,F401 - moto behind a proxy
CONST_P_FAKE = 0.7


def signal_when(proc, ready, sig=signal.SIGINT, *, settle_s: float = 0.0, poll_s: float = 0.1,
                wait_s: float = 240, timeout_s: float = 120) -> str:
    """Send `sig` to a running subprocess once `ready()` holds (and `settle_s` later); return
    its stderr (as Popen captured it) once it has ended. Killed if it outlives `timeout_s`."""
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(poll_s)
        time.sleep(settle_s)
        assert proc.poll() is None, "the process ended before the signal could reach it"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout_s)
        return err or ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def worker_pids(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawned, the resource tracker aside) that the
    process `pid` has now, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry))
    return sorted(found)


def without_root_powers() -> list[str]:
    """A prefix that runs a command as this user without root's power to read, search or write
    what its permissions forbid (CAP_DAC_OVERRIDE and the like), so that `chmod` means what it
    says for it too. Skips the test where root cannot drop it."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        import pytest
        pytest.skip("root without setpriv cannot drop its power over file permissions")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


@contextmanager
def unless_blocked_on(fifo: Path, after_s: float = 120):
    """For code that must never open the named pipe `fifo`: should it wait there to read
    (for ever: nobody writes), a writer comes and goes after `after_s`, which lets the reader
    go, and `.opened` says so. The test then fails instead of hanging the suite."""
    seen = SimpleNamespace(opened=False)
    stop = threading.Event()

    def release():
        if stop.wait(after_s):
            return
        while not stop.is_set():
            try:  # without O_NONBLOCK this would wait for a reader; ENXIO: none now
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                seen.opened = True
            except OSError:
                pass
            stop.wait(0.1)
    thread = threading.Thread(target=release, daemon=True, name="unblock-fifo")
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def streamed_rows(out: Path) -> int:
    """Rows a --no-state scan has streamed so far into the temporary file beside `out` (it
    becomes `out` when the scan ends): 0 before it is there, and once it is renamed."""
    import csv
    from screener.files import is_temporary_of
    try:
        tmp = next(out.parent / n for n in os.listdir(out.parent) if is_temporary_of(out, n))
        with open(tmp, newline="", encoding="utf-8") as f:
            return len(list(csv.DictReader(f)))
    except (StopIteration, FileNotFoundError):
        return 0


def build_tiny_model(folder: Path, p_fake: float = CONST_P_FAKE, name: str = "tiny-test") -> Path:
    """A real Meso-4 .keras file whose output is always `p_fake` (last layer: zero weights and
    the bias logit(p_fake)), so verdicts in tests are known in advance. Card beside it."""
    from bench.clips import constant_model
    return constant_model(folder, p_fake, name, file_name="tiny.keras")


def write_legacy_h5(model, path, layer_class_names=None, flip_to_real=True):
    """A Keras-2-style weights file: layer_names / weight_names attributes, numbered layers."""
    import h5py
    from screener import nets
    with h5py.File(path, "w") as f:
        if layer_class_names:
            cfg = {"class_name": "Functional", "config": {"layers": [
                {"class_name": c, "config": {"name": f"l{i}"}} for i, c in enumerate(layer_class_names)]}}
            f.attrs["model_config"] = json.dumps(cfg)
        names, count = [], {}
        layers = nets.weight_layers(model)
        for lay in layers:
            kind = {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization",
                    "Dense": "dense"}[type(lay).__name__]
            count[kind] = count.get(kind, 0) + 1
            name = f"{kind}_{count[kind]}"
            names.append(name)
            g = f.create_group(name)
            ws = lay.get_weights()
            if lay is layers[-1] and flip_to_real:
                ws = [-w for w in ws]
            wn = [f"{name}/w{i}:0" for i in range(len(ws))]
            g.attrs["weight_names"] = [n.encode() for n in wn]
            for n, w in zip(wn, ws):
                g[n] = w
        f.attrs["layer_names"] = [n.encode() for n in names]


class StubScorer:
    """Scores a crop by its mean brightness (0..1): different crops, different known scores,
    so a test can check that every score lands on its own video. No TensorFlow."""

    class card:  # noqa: N801 - mimics scoring.ModelCard
        name = "stub"
        threshold = 0.5

    def __init__(self):
        self.calls = []

    def predict(self, crops, batch_size=256):
        crops = np.asarray(crops)
        assert crops.dtype == np.uint8 and crops.shape[1:] == (256, 256, 3)
        self.calls.append(len(crops))
        return crops.reshape(len(crops), -1).mean(1).astype(np.float32) / 255.0


def audio_only_mp4(path: Path) -> Path:
    import av
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def unknown_codec_mp4(good: Path, path: Path) -> Path:
    """A valid MP4 whose video track claims a codec no decoder knows (FourCC avc1 -> zzzz)."""
    data = good.read_bytes()
    assert b"avc1" in data
    path.write_bytes(data.replace(b"avc1", b"zzzz"))
    return path


# A file name that forges a summary line and colours the terminal, were it printed raw.
FORGED_NAME = "h\nscreener: 0 videos FORGED\x1b[31m.mp4"
FORGED_SHOWN = "h\\nscreener: 0 videos FORGED\\x1b[31m.mp4"  # as screener must print it


def cut_short(good: Path, path: Path, keep: float = 0.8) -> Path:
    """`good` with its index moved to the front, then cut: the container announces every
    frame, the decoder runs out early, and the reading process warns about it (naming the
    file). Truncating a file whose index is at its end makes an error row instead."""
    import av
    whole = path.with_name(".whole.mp4")
    with av.open(str(good)) as src, av.open(str(whole), "w", format="mp4",
                                            options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def bad_inputs(folder: Path, good: Path) -> dict[str, Path]:
    """Every broken input the scan must survive, each in `folder`. Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["zero_byte"] = folder / "zero.mp4"
    out["zero_byte"].write_bytes(b"")
    out["truncated"] = folder / "truncated.mp4"
    data = good.read_bytes()
    out["truncated"].write_bytes(data[:len(data) // 3])
    out["text"] = folder / "notes.mp4"
    out["text"].write_text("this is a text file, not a video\n")
    out["audio_only"] = audio_only_mp4(folder / "audio_only.mp4")
    out["unknown_codec"] = unknown_codec_mp4(good, folder / "unknown_codec.mp4")
    return out


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def make_dataset(root, split="train", n=6, videos=False, size=(40, 52), seed=0):
    """Tiny two-class dataset: fakes are bright, reals dark, so one epoch can learn something."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for folder, base in (("df", 200), ("real", 40)):
        d = root / split / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.clip(base + rng.normal(0, 20, size + (3,)), 0, 255).astype(np.uint8)
            name = f"{folder}v{i // 3}_{i % 3}.png" if videos else f"{folder}{i:05d}.jpg"
            Image.fromarray(img).save(d / name)
    return root


# --- extract datasets -------------------------------------------------------------------------

SCREENER = [sys.executable, "-m", "screener"]  # the command, as a user runs it


def extract_args(src, out) -> list:
    """One extract of `src` into `out`, the same in every crash test."""
    return ["extract", src, "--out", out, "--label", "real", "--frames", "6"]


def screener_cli(*args, check=True, timeout=300, **kw) -> subprocess.CompletedProcess:
    """`python -m screener ARGS` in a subprocess, as a user runs it, its output captured as
    text; `check`: it must succeed (its stderr's tail is the failure's message)."""
    r = subprocess.run([*SCREENER, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def snapshot(root: Path) -> dict[str, str]:
    """Every file under a dataset folder (not the lock) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".extract.lock"}


def completed(root: Path) -> int:
    """Videos that videos.csv says are complete (or failed) so far."""
    return len(read_csv(root / "videos.csv")) if (root / "videos.csv").exists() else 0


def check_consistent(root: Path):
    """The crash-safety invariant: every manifest row's file exists, no temp file is visible
    under a crop name, every complete video has all its rows."""
    rows = read_csv(root / "manifest.csv") if (root / "manifest.csv").exists() else []
    for r in rows:
        assert (root / r["crop_file"]).is_file(), r["crop_file"]
    videos = read_csv(root / "videos.csv") if (root / "videos.csv").exists() else []
    for v in videos:
        if v["status"] == "ok":
            assert sum(r["video_id"] == v["video_id"] for r in rows) == int(v["crops"])
    for p in root.rglob("*.png"):
        assert p.stat().st_size > 0


def scratch_files(tmpdir: Path) -> list[Path]:
    """The temporary copies of objects under a TMPDIR (screener.remote's scratch folders),
    lock files aside."""
    return [p for p in tmpdir.glob("screener-objects-*/**/*")
            if p.is_file() and p.name != ".lock"]
