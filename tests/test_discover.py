"""PATH arguments -> video files: files, recursive folders, globs, loops, stable order."""
import os

import pytest

from screener.discover import InputError, find_videos


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path):
    for rel in ["b.mp4", "a.MOV", "notes.txt", "sub/z.mkv", "sub/deeper/c.webm", "sub/b.avi",
                ".hidden.mp4", ".cache/x.mp4", "sub0/y.mp4"]:
        touch(tmp_path / rel)
    return tmp_path


def rel(paths, root):
    return [os.path.relpath(p, root) for p in paths]


def test_folder_is_recursive_sorted_and_filtered(tree):
    got = rel(find_videos([tree]), tree)
    assert got == ["a.MOV", "b.mp4", "sub/b.avi", "sub/deeper/c.webm", "sub/z.mkv", "sub0/y.mp4"]


def test_order_is_argument_order_then_sorted_and_deduplicated(tree):
    got = rel(find_videos([tree / "sub", tree / "b.mp4", tree, str(tree / "sub") + "/"]), tree)
    assert got == ["sub/b.avi", "sub/deeper/c.webm", "sub/z.mkv", "b.mp4", "a.MOV", "sub0/y.mp4"]


def test_explicit_file_kept_whatever_its_name(tree):
    assert rel(find_videos([tree / "notes.txt"]), tree) == ["notes.txt"]


def test_globs(tree):
    assert rel(find_videos([str(tree / "*.mp4")]), tree) == ["b.mp4"]
    assert rel(find_videos([str(tree / "**" / "b.*")]), tree) == ["b.mp4", "sub/b.avi"]
    assert rel(find_videos([str(tree / "sub*")]), tree) == [
        "sub/b.avi", "sub/deeper/c.webm", "sub/z.mkv", "sub0/y.mp4"]
    with pytest.raises(InputError, match="no file matches"):
        find_videos([str(tree / "*.nothing")])


def test_a_glob_that_matches_nothing_is_a_warning_beside_paths_that_found_videos(tree, caplog):
    """README's `clips/ '*.mov'` on a folder without .mov files scans clips/ (issue 28); a
    glob alone that matches nothing, or beside a missing path, is still an error."""
    with caplog.at_level("WARNING", logger="screener"):
        got = find_videos([tree / "sub", str(tree / "*.nothing"), str(tree / "*.none")])
    assert rel(got, tree) == ["sub/b.avi", "sub/deeper/c.webm", "sub/z.mkv"]
    assert [r.getMessage() for r in caplog.records] == [
        f"no file matches {str(tree / p)!r}; scanning the other PATHs" for p in ("*.nothing",
                                                                                "*.none")]
    with pytest.raises(InputError, match=r"no file matches .*; no file matches"):
        find_videos([str(tree / "*.nothing"), str(tree / "*.none")])
    with pytest.raises(InputError, match=r"no such file or folder: .*gone.*no file matches"):
        find_videos([tree / "sub", tree / "gone", str(tree / "*.nothing")])


def test_a_glob_names_videos_and_never_the_scans_own_outputs(tree):
    """A pattern keeps matching files with a video extension (notes.txt, a report, a state are
    not inputs of `dir/*`), and never a file the scan writes, even one with a video name."""
    touch(tree / "r.csv")
    touch(tree / "r.csv.state.sqlite")
    assert rel(find_videos([str(tree / "*")]), tree) == [
        "a.MOV", "b.mp4", "sub/b.avi", "sub/deeper/c.webm", "sub/z.mkv", "sub0/y.mp4"]
    own = [tree / "b.mp4", tree / "sub" / "z.mkv"]
    assert rel(find_videos([str(tree / "*")], outputs=own), tree) == [
        "a.MOV", "sub/b.avi", "sub/deeper/c.webm", "sub0/y.mp4"]
    assert rel(find_videos([tree / "sub"], outputs=own), tree) == ["sub/b.avi",
                                                                   "sub/deeper/c.webm"]
    assert rel(find_videos([tree / "b.mp4"], outputs=own), tree) == ["b.mp4"]  # named: kept
    with pytest.raises(InputError, match="no video matches"):
        find_videos([str(tree / "*.txt")])


@pytest.mark.slow
def test_a_cron_job_with_a_glob_keeps_working_after_its_first_run(tmp_path, face_video,
                                                                  tiny_model):
    """`screener scan 'gl/*' --out gl/report.csv`, twice: before, the first run had an error
    row for notes.txt and the second one stopped with exit 2 (--out is an input)."""
    from helpers import copy, read_csv, screener_cli
    gl = tmp_path / "gl"
    copy(face_video, gl / "a.mp4")
    copy(face_video, gl / "b.mp4")
    (gl / "notes.txt").write_text("not a video\n")
    args = ["scan", f"{gl}/*", "--out", gl / "report.csv", "--model", tiny_model, "--frames", 1]
    for run in (1, 2):
        r = screener_cli(*args)
        assert [os.path.basename(x["path"]) for x in read_csv(gl / "report.csv")] == [
            "a.mp4", "b.mp4"], run
    assert "reused 2" in r.stderr


def test_missing_paths_are_all_named(tree):
    with pytest.raises(InputError) as e:
        find_videos([tree / "b.mp4", tree / "gone.mp4", tree / "nope"])
    assert "gone.mp4" in str(e.value) and "nope" in str(e.value)


def test_no_video_found(tmp_path):
    touch(tmp_path / "readme.txt")
    with pytest.raises(InputError, match="no video found"):
        find_videos([tmp_path])
    with pytest.raises(InputError):
        find_videos([])


def test_symlink_loop_in_a_folder(tree):
    os.symlink("..", tree / "sub" / "loop")               # folder link back to the root
    os.symlink(tree / "sub", tree / "sub" / "deeper" / "up")
    os.symlink("self.mp4", tree / "self.mp4")              # a file link pointing at itself
    got = rel(find_videos([tree]), tree)
    # every real folder once; the looping file link is listed (the scan reports why it fails)
    assert got == ["a.MOV", "b.mp4", "self.mp4", "sub/b.avi", "sub/deeper/c.webm", "sub/z.mkv",
                   "sub0/y.mp4"]


def test_linked_folder_outside_is_followed(tmp_path, tree):
    outside = tmp_path.parent / (tmp_path.name + "_outside")
    touch(outside / "o.mp4")
    os.symlink(outside, tree / "linked")
    assert "linked/o.mp4" in rel(find_videos([tree]), tree)


def test_non_ascii_and_odd_names(tmp_path):
    names = ["vidéo 日本.mp4", "=cmd.mp4", "-dash.mp4", "sp ace.mp4", os.fsdecode(b"\xff.mp4")]
    for n in names:
        touch(tmp_path / n)
    got = [os.path.basename(p) for p in find_videos([tmp_path])]
    assert sorted(got) == sorted(names)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can list any folder")
def test_unreadable_subfolder_is_skipped_with_a_warning(tree, caplog):
    os.chmod(tree / "sub", 0)
    try:
        got = rel(find_videos([tree]), tree)
    finally:
        os.chmod(tree / "sub", 0o755)
    assert "sub/z.mkv" not in got and "b.mp4" in got
    assert "cannot list" in caplog.text
