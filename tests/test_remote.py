"""Videos in object storage (screener.sources, screener.remote), against a real S3-compatible
server: moto's, started as a subprocess on 127.0.0.1 (conftest `s3`) behind a proxy that counts
its requests (helpers.S3Server). Clips and a broken object are uploaded; the scans are the
CLI's (subprocesses) or the library's. The Ray engine's reads are in tests/test_ray.py."""
from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import SCREENER, copy, screener_cli, scratch_files

SECRETS = ("s3cr3t-test-secret-must-never-show", "AKIATESTKEYID0LEAK")


@pytest.fixture(scope="module")
def store(s3, tmp_path_factory, face_video, no_face_video, two_face_video):
    """The same files on disk and under s3://clips/in/: three clips (one in a subfolder), a
    broken one, and a hidden video and a text file that a folder scan skips."""
    folder = tmp_path_factory.mktemp("store")
    copy(face_video, folder / "a_face.mp4")
    copy(no_face_video, folder / "b_none.mp4")
    copy(two_face_video, folder / "sub" / "c_two.mp4")
    (folder / "d_broken.mp4").write_bytes(face_video.read_bytes()[:3000])
    copy(face_video, folder / ".hidden.mp4")
    (folder / "notes.txt").write_text("not a video\n")
    url = s3.upload_folder(folder, s3.bucket("clips"), "in")
    keys = ["in/a_face.mp4", "in/b_none.mp4", "in/d_broken.mp4", "in/sub/c_two.mp4"]
    return SimpleNamespace(folder=folder, url=url, bucket="clips", keys=keys)


def rows(path: Path, prefix: str) -> list[dict]:
    """A CSV report's rows, paths made relative to `prefix`."""
    out = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    for r in out:
        assert r["path"].startswith(prefix), r["path"]
        r["path"] = r["path"][len(prefix):].lstrip("/")
    return out


def no_secret_in(*texts) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def watch_scratch(tmpdir: Path):
    """Poll the temporary copies under TMPDIR while a scan runs: (stop, peak bytes, seen)."""
    state = SimpleNamespace(peak=0, seen=0, stop=threading.Event())

    def poll():
        while not state.stop.is_set():
            sizes = []
            try:   # a folder renamed or removed mid-walk (a process making or ending its own)
                found = scratch_files(tmpdir)
            except FileNotFoundError:
                continue
            for p in found:
                try:
                    sizes.append(p.stat().st_size)
                except FileNotFoundError:
                    pass
            state.peak = max(state.peak, sum(sizes))
            state.seen = max(state.seen, len(sizes))
            time.sleep(0.002)
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return state, thread


@pytest.mark.slow
def test_a_bucket_scans_as_the_same_files_on_disk(store, s3, tiny_model, tmp_path):
    """The s3:// report equals the one of the same files on disk, paths aside; each object is
    read once, by the workers, through bounded temporary copies that are gone afterwards; no
    credential reaches the report, the state, the log file or the terminal (-vv)."""
    common = ["--model", tiny_model, "--frames", "4", "--settle", "0"]
    screener_cli("scan", store.folder, "--out", tmp_path / "disk.csv", *common)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    before = s3.gets(store.bucket)
    watch, thread = watch_scratch(tmpdir)
    try:
        r = screener_cli("scan", store.url, "--out", tmp_path / "s3.csv", "--workers", "2",
                         "-vv", "--log-file", tmp_path / "scan.log", *common,
                         env={**os.environ, "TMPDIR": str(tmpdir)})
    finally:
        watch.stop.set()
        thread.join()
    assert rows(tmp_path / "s3.csv", store.url) == rows(tmp_path / "disk.csv", str(store.folder))
    assert [r["path"] for r in rows(tmp_path / "s3.csv", store.url)] == \
        ["a_face.mp4", "b_none.mp4", "d_broken.mp4", "sub/c_two.mp4"]
    assert s3.gets(store.bucket) - before == 4  # one GET per video object, none of the others
    largest = max((store.folder / k[3:]).stat().st_size for k in store.keys)
    assert 0 < watch.peak <= (2 + 2) * largest and watch.seen <= 2
    assert scratch_files(tmpdir) == [] and not any(tmpdir.glob("screener-objects-*/*"))
    state = (tmp_path / "s3.csv.state.sqlite").read_bytes()
    no_secret_in(r.stderr, (tmp_path / "scan.log").read_text(), (tmp_path / "s3.csv").read_text(),
                 state.decode("latin-1"))


def test_an_unchanged_rerun_reads_no_object_and_a_changed_one_is_rescanned(
        store, s3, scorer, no_face_video, face_video, tmp_path):
    from screener.api import scan_incremental
    out = tmp_path / "r.csv"

    def run(**kw):
        kw.setdefault("settle_s", 0)
        return scan_incremental([store.url], out=out, scorer=scorer, frames=4, workers=0, **kw)
    first = run()
    assert first.scanned == 4
    report = out.read_bytes()
    gets, listed = s3.gets(store.bucket), len(s3.requests)
    gets_a = s3.gets(store.bucket, "in/a_face.mp4")
    again = run()
    assert (again.scanned, again.reused) == (0, 4)
    assert s3.gets(store.bucket) == gets      # no object read...
    assert len(s3.requests) > listed           # ...the prefix listed
    assert out.read_bytes() == report
    # New content under the same key, even of the same size (possibly in the same second):
    # a new ETag. That object alone is read and scanned again.
    data = bytearray(face_video.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    s3.upload(store.bucket, "in/a_face.mp4", bytes(data))
    changed = run()
    assert (changed.scanned, changed.reused) == (1, 3)
    assert s3.gets(store.bucket) == gets + 1
    assert s3.gets(store.bucket, "in/a_face.mp4") == gets_a + 1
    # Another size: the row follows the new content.
    s3.upload(store.bucket, "in/a_face.mp4", no_face_video)
    assert run().scanned == 1 and rows(out, store.url)[0]["status"] == "no_face"
    # A new object modified less than --settle ago waits for the next run, unread.
    s3.upload(store.bucket, "in/e_new.mp4", face_video)
    try:
        waiting = run(settle_s=3600)
        assert (waiting.scanned, waiting.deferred) == (0, 1)
        assert s3.gets(store.bucket, "in/e_new.mp4") == 0
    finally:
        s3.upload(store.bucket, "in/a_face.mp4", face_video)
        s3.client.delete_object(Bucket=store.bucket, Key="in/e_new.mp4")


def test_transient_failures_are_retried_then_an_error_row(store, s3, stub_scorer,
                                                          monkeypatch):
    """503 SlowDown twice: the third try reads it. On every try: the bounded tries, then an
    error row that says so, and the scan goes on. A listing is retried the same way."""
    import screener
    from screener import remote
    monkeypatch.setattr(remote, "BACKOFF_S", 0.01)
    a, b = (f"s3://{store.bucket}/{k}" for k in store.keys[:2])
    s3.fail_next(store.bucket, store.keys[0], 2)
    s3.fail_next(store.bucket, store.keys[1], 99)
    gets = [s3.gets(store.bucket, k) for k in store.keys[:2]]
    try:
        s3.failing[f"/{store.bucket}"] = 1   # the first listing request too
        ok, failed = screener.scan([a, b], scorer=stub_scorer, frames=2, workers=0)
    finally:
        s3.failing.clear()
    assert ok.status == "ok" and s3.gets(store.bucket, store.keys[0]) == gets[0] + 3
    assert failed.status == "error" and s3.gets(store.bucket, store.keys[1]) == \
        gets[1] + remote.ATTEMPTS
    assert failed.error == (f"cannot read the object: SlowDown: Please reduce your request "
                            f"rate. (after {remote.ATTEMPTS} tries)")


def cli_error(*args, env=None) -> tuple[int, str]:
    r = subprocess.run([*SCREENER, *map(str, args)], capture_output=True, text=True,
                       timeout=120, env=env)
    return r.returncode, r.stderr


def test_store_failures_are_exit_2_with_one_line_and_no_credential(store, s3, tmp_path):
    from helpers import free_port
    out = ["--out", tmp_path / "r.csv"]
    code, err = cli_error("scan", "s3://no-such-bucket/videos/", *out)
    assert (code, err) == (2, "screener: error: no such bucket: s3://no-such-bucket/videos/\n")
    code, err = cli_error("scan", f"{store.url}nothing.mp4", *out)
    assert (code, err) == (2, f"screener: error: no such object or prefix: "
                              f"'{store.url}nothing.mp4'\n")
    # An endpoint nobody answers on: tried ATTEMPTS times, then one line.
    dead = f"http://127.0.0.1:{free_port()}"
    code, err = cli_error("scan", store.url, *out, env={**os.environ, "AWS_ENDPOINT_URL": dead})
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"screener: error: cannot reach the object store for {store.url} "
                          f"at {dead}: Could not connect to the endpoint URL")
    assert err.endswith("(after 4 tries)\n")
    # Access denied: a real IAM user of the server may read another bucket only.
    import json

    import boto3
    iam = boto3.client("iam", endpoint_url=s3.moto, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    iam.put_user_policy(UserName="reader", PolicyName="other-bucket", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": [
            "arn:aws:s3:::other", "arn:aws:s3:::other/*"]}]}))
    reader = {**os.environ, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
              "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    s3.moto_api("reset-auth", b"0")  # from now on every request must be signed and allowed
    try:
        code, err = cli_error("scan", store.url, *out, env=reader)
    finally:
        s3.moto_api("reset-auth", b"inf")
    assert (code, err) == (2, f"screener: error: access denied listing "
                              f"{store.url}: check the credentials (AWS_* variables or ~/.aws) "
                              f"and the bucket's policy\n")
    assert key["SecretAccessKey"] not in err and key["AccessKeyId"] not in err
    assert not (tmp_path / "r.csv").exists()


def test_credentials_and_endpoint_from_the_aws_files(store, s3, tmp_path):
    """No AWS_* key or endpoint variable: ~/.aws's config and credentials files (here named
    by AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE) say where and who, as for the AWS
    tools."""
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text(f"[default]\nregion = us-east-1\nendpoint_url = {s3.endpoint}\n")
    credentials.write_text(f"[default]\naws_access_key_id = {s3.env['AWS_ACCESS_KEY_ID']}\n"
                           f"aws_secret_access_key = {s3.env['AWS_SECRET_ACCESS_KEY']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(credentials),
               AWS_EC2_METADATA_DISABLED="true")
    code = "from screener.discover import find_videos; print(find_videos([%r]))" % store.url
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str([f"s3://{store.bucket}/{k}" for k in store.keys])


def test_without_the_s3_extra_a_url_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['s3fs'] = None; from screener.cli import main; "
            "sys.argv[0] = 'screener'; main()")
    r = subprocess.run([sys.executable, "-c", code, "scan", "s3://bucket/videos/", "--out",
                        tmp_path / "r.csv"], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (2, "screener: error: s3:// paths need s3fs: "
                                           "pip install 'screener[s3]'\n")


def test_outputs_stay_local(face_video, tmp_path, monkeypatch):
    """An output named by a URL is refused before anything is read (never a local folder
    named "s3:"), and --help says outputs are local."""
    from click.testing import CliRunner
    from screener.cli import main
    monkeypatch.chdir(tmp_path)
    for option in ("--out", "--html", "--state", "--frames-out", "--log-file"):
        r = CliRunner().invoke(main, ["scan", str(face_video), "--out", str(tmp_path / "r.csv"),
                                      option, "s3://bucket/r.csv"])
        assert r.exit_code == 2, r.output
        assert f"{option} s3://bucket/r.csv: outputs are local files" in r.output
    for option in ("--out", "--contact-sheet"):
        args = ["--out", "ds", option, "s3://bucket/ds"] if option != "--out" else \
            ["--out", "s3://bucket/ds"]
        r = CliRunner().invoke(main, ["extract", str(face_video), "--label", "real", "--frames",
                                      "2", *args])
        assert r.exit_code == 2, r.output
        assert f"{option} s3://bucket/ds: outputs are local files" in r.output
    assert os.listdir(tmp_path) == []
    for command in ("scan", "extract"):
        text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        assert "s3://" in text and "are local files" in text, text


@pytest.mark.slow
def test_a_scan_killed_mid_object_leaves_no_temporary_copy_after_the_next_run(
        store, s3, tiny_model, tmp_path):
    """SIGKILL the scan and its worker (its process group, as a container's or a systemd
    unit's end does) while the worker holds a temporary copy: the copy stays behind; the next
    run removes it, and finishes the report."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    args = [*SCREENER, "scan", store.url, "--out", tmp_path / "r.csv", "--model", tiny_model,
            "--frames", "4", "--settle", "0", "--workers", "1"]
    proc = subprocess.Popen(list(map(str, args)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not scratch_files(tmpdir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, "the scan ended before a copy was seen"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 60
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scratch_files(tmpdir), "the kill left no copy: nothing to clean up"
    screener_cli(*args[3:], env=env)
    assert scratch_files(tmpdir) == [] and not any(tmpdir.glob("screener-objects-*/*"))
    assert len(rows(tmp_path / "r.csv", store.url)) == 4


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_extract_reads_objects(store, s3, detector, tmp_path):
    from screener.dataset import video_id
    from screener.extract import extract
    from helpers import read_csv
    s = extract([store.url], tmp_path / "ds", label="real", frames=4, detector=detector)
    assert (s.videos, s.extracted, s.no_face, len(s.errors)) == (4, 2, 1, 1)
    manifest = read_csv(tmp_path / "ds" / "manifest.csv")
    urls = {f"s3://{store.bucket}/{k}" for k in store.keys}
    assert {r["source_path"] for r in manifest} <= urls
    assert {r["video_id"] for r in manifest} == {video_id(f"{store.url}a_face.mp4"),
                                                 video_id(f"{store.url}sub/c_two.mp4")}
    assert video_id(f"{store.url}a_face.mp4").startswith("a-face-")


def test_a_versioned_bucket_adds_the_version_to_the_fingerprint(s3, face_video):
    """Same bytes uploaded again: a new version where the bucket keeps versions (scanned
    again), the same ETag and fingerprint where it does not (reused)."""
    from screener import sources
    from screener.discover import find_videos
    s3.bucket("kept", versioned=True)
    s3.bucket("plain")
    prints = {}
    for bucket in ("kept", "plain"):
        for n in range(2):
            url = s3.upload(bucket, "v.mp4", face_video)
            [found] = find_videos([f"s3://{bucket}/"])
            prints.setdefault(bucket, []).append(sources.fingerprint(found, 0))
    assert prints["kept"][0] != prints["kept"][1] and "VersionId=" in prints["kept"][0]
    assert prints["plain"][0] == prints["plain"][1] and "VersionId" not in prints["plain"][0]
    assert prints["plain"][0].startswith(f"{face_video.stat().st_size}:ETag=")
    assert url == "s3://plain/v.mp4"


def test_scrub_removes_credentials(monkeypatch):
    from screener.remote import scrub
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abcdSECRET")
    text = scrub("x abcdSECRET https://user:pw@host/b?X-Amz-Signature=f00&X-Amz-Credential=AK/1 y")
    assert text == "x *** https://***@host/b?X-Amz-Signature=***&X-Amz-Credential=*** y"


def test_urls_are_told_from_local_paths():
    from screener.sources import is_remote, path_key, resolved
    assert is_remote("s3://b/k.mp4") and is_remote("GS://b/k") and not is_remote("file:///x")
    assert not is_remote("clips/a.mp4") and not is_remote("c:/x.mp4") and not is_remote(3)
    assert path_key("s3://b/k.mp4") == b"s3://b/k.mp4" and resolved("s3://b/./k") == "s3://b/./k"


def test_only_a_failed_copy_is_cannot_read_the_object(store, s3):
    """An object whose copy fails (here: deleted after the listing) is an error row that says
    so; a failure once the copy is made (here a detector bug) is the row a file on disk gets,
    not a read failure; no copy is left either way."""
    from screener import scratch
    from screener.discover import find_videos
    from screener.options import SampleOptions
    from screener.pipeline import crops_from_video

    class Broken:
        def detect(self, rgb, which):
            raise RuntimeError("a detector bug")
        track = detect
    options = SampleOptions(frames=2)
    on_disk = crops_from_video(store.folder / "a_face.mp4", options, Broken())
    in_store = crops_from_video(f"{store.url}a_face.mp4", options, Broken())
    assert on_disk.error == in_store.error == "internal error: RuntimeError: a detector bug"
    s3.upload(store.bucket, "gone/x.mp4", b"x" * 100)
    [url] = find_videos(["s3://clips/gone/"])
    s3.client.delete_object(Bucket=store.bucket, Key="gone/x.mp4")
    assert crops_from_video(url, options, Broken()).error == \
        "cannot read the object: no such object"
    assert os.listdir(scratch.folder()) == [".lock"]


def test_keys_prefixes_and_globs_mix_with_local_paths(store, s3, face_video):
    """Arguments in the order given, each expanded in sorted order, a video reached twice
    listed once; a key is kept whatever its name, a glob may name a prefix (a folder)."""
    from screener.discover import find_videos
    found = find_videos([str(face_video), f"{store.url}*_face.mp4", "s3://clips/in/**/c_*.mp4",
                         f"{store.url}sub/c_two.mp4", f"{store.url}notes.txt", "s3://clips/i?"])
    assert found == [str(face_video), f"{store.url}a_face.mp4", f"{store.url}sub/c_two.mp4",
                     f"{store.url}notes.txt", f"{store.url}b_none.mp4",
                     f"{store.url}d_broken.mp4"]


def test_a_versioned_bucket_scans_incrementally(s3, scorer, face_video, tmp_path):
    """Where the bucket keeps versions, the check after the scan (a HEAD) and the listing
    describe an object alike: it is recorded, an unchanged rerun reads nothing, and the same
    bytes uploaded again (a new version) are scanned again."""
    from screener.api import scan_incremental
    s3.bucket("history", versioned=True)
    s3.upload("history", "v/a.mp4", face_video)

    def run():
        return scan_incremental(["s3://history/v/"], out=tmp_path / "r.csv", scorer=scorer,
                                frames=2, workers=0, settle_s=0)
    first = run()
    assert (first.scanned, first.unrecorded) == (1, 0)
    gets = s3.gets("history")
    again = run()
    assert (again.scanned, again.reused) == (0, 1) and s3.gets("history") == gets
    s3.upload("history", "v/a.mp4", face_video)
    assert run().scanned == 1


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root` (a folder: None, a file: its bytes), links not followed."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


@pytest.mark.slow
def test_a_link_in_place_of_the_temporary_folder_is_never_followed(store, s3, tiny_model,
                                                                   tmp_path):
    """Another user makes <TMPDIR>/screener-objects-<uid> first, as a link to a folder of
    ours: the scan neither sweeps nor copies there (before: "removed 2 temporary folder(s)",
    the folder emptied); its objects are error rows that say why, and the run goes on."""
    tmpdir, victim = tmp_path / "tmp", tmp_path / "victim"
    for sub in ("1234-abcd", "project"):
        (victim / sub).mkdir(parents=True)
        (victim / sub / "notes.txt").write_text(f"{sub}: keep me\n")
    tmpdir.mkdir()
    before = _tree(victim)
    os.symlink(victim, tmpdir / f"screener-objects-{os.getuid()}")
    out = tmp_path / "r.csv"
    r = screener_cli("scan", store.url, "--out", out, "--no-state", "--model", tiny_model,
                     "--frames", 2, env={**os.environ, "TMPDIR": str(tmpdir)})
    assert _tree(victim) == before
    assert "removed" not in r.stderr and "not removing temporary copies" in r.stderr
    found = rows(out, store.url)
    assert len(found) == 4 and all(x["status"] == "error" for x in found)
    assert all("symbolic link" in x["error"] for x in found), found


@pytest.mark.parametrize("plant", ["link", "another user's folder", "a file"])
def test_the_temporary_folder_must_be_a_private_folder_of_ours(tmp_path, monkeypatch, plant):
    """The sweep leaves a planted name alone and a copy is refused there (scratch.py)."""
    import tempfile
    from screener import scratch
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(scratch, "_scratch", None)  # this process's own folder, not made yet
    victim = tmp_path / "victim"
    (victim / "42-abcdefgh").mkdir(parents=True)
    (victim / "42-abcdefgh" / "notes.txt").write_text("keep me\n")
    top = scratch.root()
    if plant == "link":
        os.symlink(victim, top)
    elif plant == "a file":
        top.write_text("not a folder\n")
    else:
        victim.rename(top)
        victim = top
        if os.geteuid() != 0:
            pytest.skip("only root can give a folder to another user")
        os.chown(top, 65534, 65534)
    before = _tree(victim)
    assert scratch.sweep() == 0
    with pytest.raises(OSError, match="symbolic link|another user"):
        scratch.folder()
    assert _tree(victim) == before


def test_keys_with_dot_parts_below_a_prefix_are_listed_and_read(s3, face_video):
    """A key such as `in/x/../v.mp4` is a name, not a path: it is listed and read like any
    other (before: skipped without a word, so an upload could pass unscreened); hidden names
    stay skipped."""
    from screener import remote
    from screener.discover import find_videos
    bucket = s3.bucket("dots")
    for key in ("in/x/../up.mp4", "in/./here.mp4", "in/plain.mp4", "in/.hidden.mp4",
                "in/.cache/x.mp4"):
        s3.upload(bucket, key, face_video)
    found = find_videos([f"s3://{bucket}/in/"])
    assert found == [f"s3://{bucket}/in/./here.mp4", f"s3://{bucket}/in/plain.mp4",
                     f"s3://{bucket}/in/x/../up.mp4"]
    with remote.local_copy(found[-1]) as local:
        assert Path(local).read_bytes() == face_video.read_bytes()
