"""Frame sampling on real H.264 files made with PyAV at test time."""
import os

import numpy as np
import pytest

from screener import synth, video
from screener.errors import VideoError
from screener.synth import Placement


@pytest.fixture(scope="module")
def clip40(tmp_path_factory):
    return synth.face_clip(tmp_path_factory.mktemp("v") / "c40.mp4", 320, 240, 40, fps=25,
                           faces=[Placement("collins", 60, 20, 80)])


def test_probe(clip40):
    info = video.probe(clip40)
    assert (info.frame_count, info.fps, info.width, info.height) == (40, 25.0, 320, 240)
    assert info.duration_s == pytest.approx(1.6)
    assert info.codec in ("h264", "avc1")
    assert info.rotation_deg == 0


def test_n_frames_spread_evenly(clip40):
    frames = list(video.sample_frames(clip40, frames=8))
    assert [f.index for f in frames] == [0, 6, 11, 17, 22, 28, 33, 39]
    assert frames[1].time_s == pytest.approx(6 / 25)
    assert all(f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8 for f in frames)


def test_more_frames_than_video_gives_every_frame(clip40):
    assert [f.index for f in video.sample_frames(clip40, frames=100)] == list(range(40))


def test_every_seconds(clip40):
    assert [f.index for f in video.sample_frames(clip40, every_s=0.4)] == [0, 10, 20, 30]


def test_frames_are_rgb(tmp_path):
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    p = synth.write_video(tmp_path / "red.mp4", [red] * 3)
    f = next(video.sample_frames(p, frames=1))
    assert f.rgb[..., 0].mean() > 180 and f.rgb[..., 2].mean() < 60


def test_missing_frame_count_falls_back_to_counting(tmp_path):
    # A raw H.264 stream has no container index: OpenCV reports a nonsense frame count.
    frames = [synth.background(160, 120, i) for i in range(30)]
    raw = synth.write_video(tmp_path / "c.h264", iter(frames))
    mp4 = synth.write_video(tmp_path / "c.mp4", iter(frames))
    import cv2
    assert cv2.VideoCapture(str(raw)).get(cv2.CAP_PROP_FRAME_COUNT) != 30
    got = [f.index for f in video.sample_frames(raw, frames=8)]
    assert got == [f.index for f in video.sample_frames(mp4, frames=8)]
    assert len(got) == 8 and got[-1] == 29


def test_truncated_video_yields_what_it_has(tmp_path):
    frames = [synth.background(160, 120, i) for i in range(50)]
    p = synth.write_video(tmp_path / "t.mp4", iter(frames), options={"g": "5"},
                          container_options={"movflags": "faststart"})
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * 0.6)])
    assert video.probe(p).frame_count == 50  # the container still promises 50
    got = [f.index for f in video.sample_frames(p, frames=10)]
    assert 2 <= len(got) < 10 and got == sorted(got)


@pytest.mark.parametrize("deg", [90, 180, 270])
def test_rotation_metadata_is_honoured(tmp_path, deg):
    upright = synth.background(320, 240)
    synth.paste(upright, synth.portrait("collins"), 30, 10, 200)
    stored = np.ascontiguousarray(np.rot90(upright, deg // 90))  # as a phone stores it
    p = synth.set_rotation(synth.write_video(tmp_path / "r.mp4", [stored] * 3), deg)
    info = video.probe(p)
    assert info.rotation_deg == deg
    assert (info.width, info.height) == (320, 240)
    f = next(video.sample_frames(p, frames=1))
    assert f.rgb.shape == (240, 320, 3)
    # Displayed frame equals the upright picture (up to compression).
    assert np.abs(f.rgb.astype(int) - upright).mean() < 8


def test_odd_size_444(tmp_path):
    frames = [synth.background(333, 197, i) for i in range(5)]
    p = synth.write_video(tmp_path / "odd.mp4", iter(frames), pix_fmt="yuv444p")
    info = video.probe(p)
    assert (info.width, info.height) == (333, 197)
    assert [f.rgb.shape for f in video.sample_frames(p, frames=2)] == [(197, 333, 3)] * 2


def test_one_frame_video(tmp_path):
    p = synth.write_video(tmp_path / "one.mp4", [synth.background(64, 64)])
    assert [f.index for f in video.sample_frames(p, frames=32)] == [0]


def _file(d, name, data: bytes):
    (d / name).write_bytes(data)
    return d / name


@pytest.mark.parametrize("make,reason", [
    (lambda d: d / "missing.mp4", "no such file"),
    (lambda d: _file(d, "empty.mp4", b""), "empty file"),
    (lambda d: _file(d, "text.mp4", b"hello, not a video\n" * 50), "not a video file"),
    (lambda d: d, "directory"),
])
def test_unreadable_inputs_raise_clear_error(tmp_path, make, reason):
    with pytest.raises(VideoError, match=reason) as e:
        list(video.sample_frames(make(tmp_path)))
    assert "\n" not in str(e.value)


def test_truncated_without_index_raises(tmp_path):
    # moov at the end (the default) and the end cut off: there is nothing to index the frames.
    p = synth.write_video(tmp_path / "cut.mp4", [synth.background(160, 120, i) for i in range(20)])
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(VideoError) as e:
        list(video.sample_frames(p))
    assert "\n" not in str(e.value) and str(e.value)


def test_audio_only_raises(tmp_path):
    import av
    p = tmp_path / "audio.mp4"
    with av.open(str(p), "w") as out:
        s = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 16000
        for i in range(10):
            frame.pts = i * 1024
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    with pytest.raises(VideoError, match="no video stream"):
        video.probe(p)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_permissions(clip40, tmp_path):
    p = tmp_path / "locked.mp4"
    p.write_bytes(clip40.read_bytes())
    p.chmod(0)
    with pytest.raises(VideoError, match="permission denied"):
        video.probe(p)


def test_seeking_returns_the_same_frames_as_grabbing(tmp_path, monkeypatch):
    def frames():
        for i in range(240):
            f = synth.background(160, 120, 0)
            f[:, (i * 3) % 160] = 255  # every frame differs
            yield f
    p = synth.write_video(tmp_path / "long.mp4", frames(), options={"g": "10"})
    grabbed = list(video.sample_frames(p, frames=6))
    monkeypatch.setattr(video, "SEEK_MIN_GAP", 1)
    monkeypatch.setattr(video, "SEEK_OVERHEAD_FRAMES", 0)
    assert video.keyframes(p)[:3] == [0, 10, 20]
    seeked = list(video.sample_frames(p, frames=6))
    assert [f.index for f in seeked] == [f.index for f in grabbed] == [0, 48, 96, 143, 191, 239]
    for a, b in zip(grabbed, seeked):
        assert np.array_equal(a.rgb, b.rgb)
