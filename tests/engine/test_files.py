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
