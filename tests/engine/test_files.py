"""Result files are replaced whole or not at all."""
import json
import os

import pytest

from engine.files import write_json


def test_json_is_written_atomically(tmp_path):
    path = tmp_path / "sub" / "report.json"
    write_json(str(path), {"a": 1})
    write_json(str(path), {"a": 2})  # replaces the old report
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(path.parent) == ["report.json"]  # no temporary file left behind
    with pytest.raises(TypeError):
        write_json(str(path), {"a": object()})  # not JSON: the old report stays intact
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(path.parent) == ["report.json"]


def test_files_get_the_permissions_open_would_give(tmp_path):
    # The temporary file is private (0600); what lands at the path must not stay so, or a
    # checkpoint, report or export written by one user is unreadable to the next.
    write_json(str(tmp_path / "report.json"), {})
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    mode = os.stat(tmp_path / "report.json").st_mode & 0o777
    assert mode == os.stat(plain).st_mode & 0o777 and mode & 0o044  # group/others may read
