"""The bundle layer on its own: atomic writes and the typed manifest (no model needed)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from graftwork.bundle import (
    FORMAT,
    MANIFEST,
    Manifest,
    atomic,
    read_manifest,
    save_manifest,
    write_bundle,
)
from graftwork.bundle.tasks import expand, task_folder
from graftwork.errors import BundleError


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write(folder):
    """The files every bundle's manifest must cover: the config and the weights."""
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")


@pytest.fixture
def umask():
    """The umask in force (read by setting and restoring it)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_atomic_files_get_the_usual_mode_not_mkstemps_0600(tmp_path, umask):
    written = atomic.write_text(tmp_path / "a.txt", "hello")
    assert written.read_text() == "hello"
    assert mode(written) == 0o666 & ~umask
    old = os.umask(0o022)
    try:
        assert mode(atomic.write_json(tmp_path / "b.json", {"x": 1})) == 0o644
        with atomic.building(tmp_path / "folder") as tmp:
            (tmp / "inside.txt").write_text("x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "folder") == 0o755
    assert mode(tmp_path / "folder" / "inside.txt") == 0o644


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "data.json"
    atomic.write_json(path, {"v": 1})
    atomic.write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_building_replaces_a_folder_whole_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic.building(target) as tmp:
        (tmp / "one.txt").write_text("1")
    with atomic.building(target) as tmp:
        (tmp / "two.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["two.txt"]
    with pytest.raises(RuntimeError, match="half way"), atomic.building(target) as tmp:
        (tmp / "three.txt").write_text("3")
        raise RuntimeError("half way")
    assert sorted(p.name for p in target.iterdir()) == ["two.txt"]  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left


def test_place_moves_a_finished_folder_over_an_existing_one(tmp_path):
    final, tmp = tmp_path / "step-1", atomic.temp_path(tmp_path / "step-1", unique=False)
    final.mkdir()
    (final / "old").write_text("old")
    tmp.mkdir()
    (tmp / "new").write_text("new")
    atomic.place(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-1"]


def test_a_written_bundle_reads_back_with_its_manifest(tmp_path, umask):
    bundle = write_bundle(tmp_path / "bundle", write, {"name": "tiny", "task": "classification"})
    manifest = read_manifest(bundle)
    assert manifest["name"] == "tiny" and manifest["task"] == "classification"
    assert set(manifest["files"]) == {"config.json", "model.safetensors"}
    assert mode(bundle / "graftwork.json") == 0o666 & ~umask


# The typed manifest --------------------------------------------------------------------------


def test_the_manifest_reads_by_attribute_and_keeps_keys_it_does_not_know(tmp_path):
    extra = {"mask_ratio": 0.15, "from_a_newer_graftwork": {"x": [1, 2]}}
    bundle = write_bundle(tmp_path / "b", write, {"name": "n", "task": "mlm", **extra})
    manifest = read_manifest(bundle)
    assert isinstance(manifest, Manifest)
    assert (manifest.name, manifest.task, manifest.format) == ("n", "mlm", FORMAT)
    assert manifest.labels == [] and manifest.method is None and manifest.artifacts == {}
    written = json.loads((bundle / MANIFEST).read_text())
    assert manifest.dump() == written  # nothing added, nothing lost
    assert written["from_a_newer_graftwork"] == {"x": [1, 2]}
    save_manifest(bundle, manifest)
    assert json.loads((bundle / MANIFEST).read_text()) == written


def test_the_manifest_still_reads_as_the_dict_it_was(tmp_path):
    bundle = write_bundle(tmp_path / "b", write, {"name": "n", "recipe": {"task": {"type": "x"}}})
    manifest = read_manifest(bundle)
    assert manifest["recipe"] == {"task": {"type": "x"}} and manifest.get("name") == "n"
    assert manifest.get("artifacts", "absent") == "absent"  # not in the file
    assert "files" in manifest and "pruning" not in manifest
    with pytest.raises(KeyError):
        manifest["pruning"]
    assert {**manifest} == json.loads((bundle / MANIFEST).read_text())


def test_a_multitask_manifest_names_each_tasks_folder(tmp_path):
    tasks = {
        "sst": {"type": "classification", "path": "."},
        "ner": {"type": "ner", "path": "t/ner"},
    }
    bundle = write_bundle(tmp_path / "mt", write, {"name": "mt", "multitask": {"tasks": tasks}})
    manifest = read_manifest(bundle)
    assert task_folder(bundle, manifest, "ner") == bundle / "t" / "ner"
    assert task_folder(bundle, manifest, None) == bundle
    assert expand([f"x={bundle}"]) == [f"x-sst={bundle / '.'}", f"x-ner={bundle / 't/ner'}"]


def test_a_manifest_of_the_wrong_shape_is_a_bundle_error_naming_the_key(tmp_path):
    bundle = write_bundle(tmp_path / "b", write, {"name": "n"})
    data = json.loads((bundle / MANIFEST).read_text())
    data["labels"] = "not a list"
    (bundle / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"not a valid graftwork.json \(labels: "):
        read_manifest(bundle)
    with pytest.raises(BundleError, match="multitask.tasks"):
        write_bundle(tmp_path / "c", write, {"multitask": {"sampling": "equal"}})
    assert not (tmp_path / "c").exists()


# A manifest that cannot vouch for what loads ------------------------------------------------


def edited_manifest(tmp_path, edit):
    """A written bundle whose weights were then replaced and whose manifest `edit` changed."""
    bundle = write_bundle(tmp_path / "b", write, {"name": "n", "task": "classification"})
    data = json.loads((bundle / MANIFEST).read_text())
    edit(data)
    (bundle / MANIFEST).write_text(json.dumps(data))
    (bundle / "model.safetensors").write_bytes(b"tampered")
    return bundle


def test_a_manifest_without_files_is_a_damaged_bundle(tmp_path):
    bundle = edited_manifest(tmp_path, lambda data: data.pop("files"))
    with pytest.raises(BundleError) as error:
        read_manifest(bundle)
    assert str(error.value) == (
        f"bundle {bundle}: its graftwork.json lists no files ('files' is missing), so what "
        "loads cannot be checked against what was written; the bundle is damaged. Re-create it "
        "(graft train), or load it with verify=False if you trust where it came from"
    )
    assert read_manifest(bundle, verify=False).name == "n"  # the way out it names


def test_a_manifest_with_empty_files_is_a_damaged_bundle(tmp_path):
    bundle = edited_manifest(tmp_path, lambda data: data.update(files={}))
    with pytest.raises(BundleError, match=r"lists no files \('files' is empty\).*damaged"):
        read_manifest(bundle)


def test_a_manifest_that_does_not_list_the_weights_is_a_damaged_bundle(tmp_path):
    bundle = edited_manifest(tmp_path, lambda data: data["files"].pop("model.safetensors"))
    with pytest.raises(
        BundleError,
        match=r"does not list model.safetensors or model.safetensors.index.json in its 'files'",
    ):
        read_manifest(bundle)


def test_a_manifest_that_does_not_list_the_config_is_a_damaged_bundle(tmp_path):
    bundle = edited_manifest(tmp_path, lambda data: data["files"].pop("config.json"))
    with pytest.raises(BundleError, match=r"does not list config.json in its 'files'"):
        read_manifest(bundle)


def test_a_manifest_that_does_not_list_an_onnx_artifact_is_a_damaged_bundle(tmp_path):
    def add_artifact(data):
        data["artifacts"] = {"onnx-int8": {"path": "onnx/model-int8.onnx"}}

    bundle = edited_manifest(tmp_path, add_artifact)
    (bundle / "model.safetensors").write_bytes(b"weights")  # only the artifact is unlisted
    with pytest.raises(BundleError, match=r"does not list onnx/model-int8.onnx in its 'files'"):
        read_manifest(bundle)


def test_a_bundle_path_that_is_a_file_is_not_said_to_be_missing(tmp_path):
    bundle = write_bundle(tmp_path / "b", write, {"name": "n"})
    with pytest.raises(BundleError, match=r"model.safetensors is a file, not a bundle folder"):
        read_manifest(bundle / "model.safetensors")


# A full disk, and what killed writes left ----------------------------------------------------


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_a_bundle_says_what_where_and_how_much(tmp_path):
    bundle = write_bundle(tmp_path / "b", write, {"name": "old"})

    def fills_the_disk(folder):
        (folder / "model.safetensors").write_bytes(b"x" * 300_000)
        enospc()

    with pytest.raises(atomic.DiskFullError) as error:
        write_bundle(bundle, fills_the_disk, {"name": "new"})
    message = str(error.value)
    assert message.startswith(f"cannot write {bundle}: no space left on the disk (it needs more ")
    assert "than the 0.3 MB written before the disk filled; " in message
    free = float(re.search(r"; ([\d,.]+) MB free there\)", message)[1].replace(",", ""))
    assert free == pytest.approx(shutil.disk_usage(tmp_path).free / 1e6, rel=0.01)
    assert message.endswith(
        "free some space, or write somewhere else (output_dir=… for a run), and try again"
    )
    assert read_manifest(bundle).name == "old"  # as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # nothing half-written


def test_a_full_disk_in_safetensors_words_is_a_full_disk(tmp_path):
    from safetensors import SafetensorError

    def fails(folder):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    with pytest.raises(atomic.DiskFullError, match=r"cannot write .*b: no space left on the disk"):
        write_bundle(tmp_path / "b", fails, {"name": "n"}, needed=lambda: 5_000_000)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_a_file_keeps_the_old_file(tmp_path, monkeypatch):
    path = atomic.write_json(tmp_path / "metrics.json", {"v": 1})
    monkeypatch.setattr(Path, "write_text", enospc)
    with pytest.raises(atomic.DiskFullError, match=r"metrics.json: no space left on the disk"):
        atomic.write_json(path, {"v": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.fixture
def dead_pid():
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The id of a process that runs while the test does."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_the_next_write_removes_what_killed_writes_of_the_target_left(tmp_path, dead_pid, live_pid):
    for name in (f".out.tmp-{dead_pid}", f".out.work-{dead_pid}", f".out.tmp-{live_pid}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"half")
    (tmp_path / f".other.tmp-{dead_pid}").mkdir()  # another target's: left to its own writes
    with atomic.building(tmp_path / "out") as tmp:
        write(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out", f".out.tmp-{live_pid}", f".other.tmp-{dead_pid}"]  # a live writer's is kept
    )


def test_a_folder_a_killed_replacement_moved_aside_is_put_back(tmp_path, dead_pid):
    aside = tmp_path / f".out.old-{dead_pid}"
    aside.mkdir()
    (aside / "config.json").write_text("{}")
    assert atomic.remove_stale(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "config.json").read_text() == "{}"
