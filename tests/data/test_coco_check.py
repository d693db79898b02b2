"""`python -m data.coco_check ROOT`: a missing image, a truncated JPEG and a json cut short
each get a message naming the file and the fault, and a non-zero exit status."""
import os
import subprocess
import sys

from tests.data.test_coco import write_quirky_split

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def coco_check(root):
    return subprocess.run([sys.executable, '-m', 'data.coco_check', str(root), '--splits',
                           'val2017', '--no-progress'], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_a_good_split_passes(tmp_path):
    write_quirky_split(str(tmp_path))
    result = coco_check(tmp_path)
    assert result.returncode == 0 and 'val2017: 0 problem(s)' in result.stdout, \
        result.stdout + result.stderr


def test_missing_image_and_truncated_jpeg_are_each_named(tmp_path):
    write_quirky_split(str(tmp_path))
    os.remove(tmp_path / 'val2017' / 'c.jpg')
    path = tmp_path / 'val2017' / 'a.jpg'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    result = coco_check(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f'{tmp_path / "val2017" / "c.jpg"}: missing image (listed in' in result.stdout
    assert f'{path}: truncated JPEG' in result.stdout
    assert 'val2017: 2 problem(s)' in result.stdout  # b.png and d.jpg are fine


def test_json_cut_short_is_named(tmp_path):
    json_path = write_quirky_split(str(tmp_path))
    with open(json_path) as f:
        text = f.read()
    with open(json_path, 'w') as f:
        f.write(text[:len(text) // 2])
    result = coco_check(tmp_path)
    assert result.returncode == 1
    assert f'annotation file {json_path} is not valid JSON' in result.stderr
    assert 'truncated' in result.stderr
