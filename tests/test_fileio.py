"""Shared plumbing: the up-front check of where a long command will write, and the one error base."""
import os

from nedr.fileio import output_problem


def test_writable_targets_have_no_problem(tmp_path):
    assert output_problem(tmp_path / "a.json") is None
    assert output_problem(tmp_path / "new" / "deeper", folder=True) is None  # created with its parents
    assert output_problem(tmp_path, folder=True) is None


def test_each_unwritable_target_names_the_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "exists and is not a directory" in output_problem(blocker, folder=True)
    assert "is not a directory" in output_problem(blocker / "report", folder=True)
    assert "is not a directory" in output_problem(blocker / "r.json")
    assert "does not exist" in output_problem(tmp_path / "missing" / "r.json")
    assert "it is a directory" in output_problem(tmp_path)


def test_read_only_folder_is_reported(tmp_path, monkeypatch):
    """Asked of the OS (os.access), which a root test run cannot see refuse, so the answer is faked."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert f"no write permission in {tmp_path}" in output_problem(tmp_path / "r.json")
    assert f"no write permission in {tmp_path}" in output_problem(tmp_path / "sub", folder=True)


def test_commands_check_outputs_before_work(tmp_path, capsys):
    from nedr.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["bench", "-o", str(tmp_path / "file" / "report")]) == 2
    assert "file is not a directory" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"),
                 "--json", str(tmp_path / "missing" / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "--json: cannot write" in err and err.count("\n") == 1


def test_every_stage_error_is_a_nedr_error():
    """The CLI reports one type in one line: each stage's error derives from NedrError and keeps
    the builtin it refines for library callers."""
    from nedr.errors import NedrError, UserError, expected_errors
    from nedr.export.onnx_export import ExportError
    from nedr.model.checkpoint import CheckpointError
    from nedr.model.imageio import DataError
    from nedr.model.samples import SampleError
    from nedr.runtime.errors import BackendError, RunError

    assert NedrError in expected_errors()
    for cls, builtin in [(CheckpointError, ValueError), (DataError, ValueError), (SampleError, RuntimeError),
                         (RunError, RuntimeError), (BackendError, RuntimeError), (UserError, RuntimeError),
                         (ExportError, RuntimeError)]:
        assert issubclass(cls, NedrError) and issubclass(cls, builtin), cls


def test_atomic_write_renames_into_place_and_cleans_up_on_failure(tmp_path):
    from nedr.fileio import atomic_write, partial_name, write_bytes_atomic, write_text_atomic

    target = tmp_path / "out.json"
    assert write_text_atomic(target, "new") == target and target.read_text() == "new"
    assert write_bytes_atomic(tmp_path / "e.engine", memoryview(b"\x01\x02")).read_bytes() == b"\x01\x02"

    def fails(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    try:
        atomic_write(target, fails)
    except OSError:
        pass
    assert target.read_text() == "new"  # the old file stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.engine", "out.json"]  # no temporary file left
    assert partial_name(target).name == "out.json.partial"
    assert partial_name(tmp_path / "a.png", hidden=True).name == ".a.partial.png"  # suffix kept for OpenCV
