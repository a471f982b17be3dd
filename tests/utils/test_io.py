"""Text input (plain or gzip) and atomic writes."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, NoSpaceWriter

from dpr.utils import io as io_module
from dpr.utils.errors import DiskFullError
from dpr.utils.io import (
    atomic_write,
    is_disk_full,
    naming_full_disk,
    open_text,
    remove_stale_temp_files,
    staged_folder,
    temp_file_target,
)


def test_open_text_reads_plain_and_gzip_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("élève\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("œuvre\n")
    with open_text(tmp_path / "a.txt") as a, open_text(tmp_path / "b.txt.gz") as b:
        assert (a.read(), b.read()) == ("élève\n", "œuvre\n")


def test_atomic_write_replaces_the_file_only_on_success(tmp_path: Path) -> None:
    # Given an existing file
    target = tmp_path / "sub" / "out.json"
    with atomic_write(target) as handle:
        handle.write("old")
    # When a later write fails half-way
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("new, trunc")
        raise RuntimeError("interrupted")
    # Then the old content is intact and no temporary file is left
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]
    with atomic_write(target, "wb") as handle:
        handle.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_atomic_write_refuses_other_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "a"):
        pass


def test_stale_temporary_files_of_chosen_targets_are_removed(tmp_path: Path) -> None:
    # Given the temporary files two killed writes left, one of them for another program's file
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "ckpt.0.4", "wb"):
        raise KeyboardInterrupt  # cleaned up by atomic_write itself
    mine = tmp_path / ".ckpt.0.4.k2j_9x0a.tmp"
    other = tmp_path / ".notes.txt.abcdefgh.tmp"
    for path in (mine, other, tmp_path / "ckpt.0.8"):
        path.write_bytes(b"x")
    assert temp_file_target(mine.name) == "ckpt.0.4"
    assert temp_file_target("ckpt.0.8") is None and temp_file_target(".a.short.tmp") is None
    # When removing those whose final name starts with "ckpt"
    removed = remove_stale_temp_files(tmp_path, lambda name: name.startswith("ckpt"))
    # Then only that one is gone
    assert removed == [mine]
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "ckpt.0.8"]
    assert remove_stale_temp_files(tmp_path / "missing", lambda name: True) == []


def test_atomic_write_temporary_names_are_recognised(tmp_path: Path) -> None:
    seen = []
    with atomic_write(tmp_path / "best.json") as handle:
        seen = [p.name for p in tmp_path.iterdir()]
        handle.write("{}")
    (name,) = seen
    assert temp_file_target(name) == "best.json"


def test_staged_folder_appears_only_when_complete(tmp_path: Path) -> None:
    # Given a folder written through staged_folder that fails half-way
    target = tmp_path / "idx"
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "a.bin").write_bytes(b"half")
        raise RuntimeError("killed")
    # Then nothing is left, neither the folder nor its staging folder
    assert list(tmp_path.iterdir()) == []
    # When it succeeds
    with staged_folder(target) as staging:
        (staging / "a.bin").write_bytes(b"whole")
    # Then the folder holds the files and no staging folder remains
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
    assert (target / "a.bin").read_bytes() == b"whole"


def test_staged_folder_refuses_an_existing_folder_unless_overwrite(tmp_path: Path) -> None:
    # Given an existing folder
    target = tmp_path / "idx"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    # Then it is refused by default, and replaced as a whole with overwrite
    with pytest.raises(FileExistsError), staged_folder(target):
        pass
    with staged_folder(target, overwrite=True) as staging:
        (staging / "new.bin").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["new.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_atomic_write_names_the_file_when_the_disk_is_full(tmp_path: Path) -> None:
    # Given an existing file
    target = tmp_path / "best.json"
    target.write_text("old")
    # When rewriting it fails for lack of space (ENOSPC)
    with pytest.raises(DiskFullError) as caught, atomic_write(target) as handle:
        handle.write("new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    # Then the error is one line naming the file, the old content intact, no temporary file
    assert str(caught.value).startswith(f"{target}: not written, no space left on the device")
    assert "\n" not in str(caught.value)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["best.json"]


def test_torch_save_on_a_full_disk_is_a_disk_full_error(tmp_path: Path) -> None:
    # Given torch.save writing through a file that fails like a full disk after 1 kB
    target = tmp_path / "ck.0.8"
    # When saving: torch's zip writer turns the failed write into "unexpected pos"
    with pytest.raises(DiskFullError, match=r"ck\.0\.8: not written, no space left") as caught, \
            atomic_write(target, "wb") as handle:
        torch.save({"w": torch.zeros(10_000)}, NoSpaceWriter(handle, 1024))
    # Then it is named as a full disk (the RuntimeError kept as its cause), nothing left
    assert "unexpected pos" in str(caught.value.__cause__)
    assert list(tmp_path.iterdir()) == []


def test_unexpected_pos_counts_as_full_disk_only_when_space_is_gone(tmp_path: Path,
                                                                     monkeypatch) -> None:
    # Given torch's error without an ENOSPC behind it (another write failure)
    error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    # Then with free space it is not a full disk (a bug or another fault keeps its traceback)
    assert not is_disk_full(error, tmp_path)
    with pytest.raises(RuntimeError, match="unexpected pos"), atomic_write(tmp_path / "x"):
        raise error
    # And with (nearly) no space left it is
    monkeypatch.setattr(io_module, "free_bytes", lambda folder: 4096)
    assert is_disk_full(error, tmp_path)
    with pytest.raises(DiskFullError), atomic_write(tmp_path / "x"):
        raise error
    assert not is_disk_full(ValueError("unexpected pos"), tmp_path)


def test_naming_full_disk_names_an_appended_file(tmp_path: Path) -> None:
    log = tmp_path / "training_log.jsonl"
    with pytest.raises(DiskFullError, match=r"training_log\.jsonl: not written, no space"), \
            naming_full_disk(log):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))  # a quota counts too
    with pytest.raises(PermissionError), naming_full_disk(log):
        raise PermissionError(errno.EACCES, "denied")


_TMPFS_SCRIPT = """
import sys, torch
from pathlib import Path
from dpr.utils.errors import DiskFullError
from dpr.utils.io import atomic_write
folder = Path(sys.argv[1])
(folder / "ck.0.4").write_bytes(b"previous checkpoint")
try:
    with atomic_write(folder / "ck.0.8", "wb") as handle:
        torch.save({"w": torch.zeros(1_000_000)}, handle)  # 4 MB on a 1 MB file system
except DiskFullError as err:
    print("ERROR", err)
print("LEFT", sorted(p.name for p in folder.iterdir()), (folder / "ck.0.4").read_bytes())
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_torch_save_on_a_real_full_tmpfs(tmp_path: Path) -> None:
    # Given a 1 MB tmpfs mounted in a private mount namespace (skipped where not permitted)
    folder = tmp_path / "small"
    folder.mkdir()
    command = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && '
               'exec "$2" -c "$3" "$1"', "sh", str(folder), sys.executable, _TMPFS_SCRIPT]
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user and mount namespaces are not permitted here")
    # When a checkpoint larger than the file system is saved atomically beside an older one
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # Then it is a one-line full-disk error naming the file, the older file is intact
    assert result.returncode == 0, result.stderr
    assert f"ERROR {folder / 'ck.0.8'}: not written, no space left on the device" in result.stdout
    assert "LEFT ['ck.0.4'] b'previous checkpoint'" in result.stdout
