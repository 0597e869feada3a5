"""The Space folder builder writes a folder the Hub accepts, and its check refuses one it would not."""

from __future__ import annotations

import hashlib
import json

import pytest

from fmblur import space


@pytest.fixture(scope="module")
def space_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("space") / "cpu"
    notes = space.build(folder)
    assert any("weights of manifest.json present" in note for note in notes)
    return folder


def test_the_space_folder_carries_app_weights_and_lfs_rules(space_folder):
    assert space.front_matter(space_folder / "README.md")["sdk"] == "docker"
    weights = space_folder / "fmblur" / "weights"
    assert not weights.is_symlink() and weights.is_dir()
    manifest = json.loads((weights / "manifest.json").read_text())
    ours = [name for name, entry in manifest.items() if not entry["source"].startswith("pip ")]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in weights.iterdir() if p.is_file()}
    assert ours and all(manifest[name]["sha256"] in digests for name in ours)
    assert "*.pt filter=lfs" in (space_folder / ".gitattributes").read_text()
    assert (space_folder / "fmblur" / "examples" / "maksssksksss5.jpg").is_file()
    assert (space_folder / "docs" / "results" / "eval" / "fmd-val.json").is_file()  # the app's measured labels
    assert "ARG DEVICE=cpu" in (space_folder / "Dockerfile").read_text()


def test_the_gpu_build_starts_from_a_cuda_image(tmp_path):
    space.build(tmp_path / "gpu", gpu=True)
    dockerfile = (tmp_path / "gpu" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=nvidia/cuda:" in dockerfile and "ARG DEVICE=gpu" in dockerfile
    assert "onnxruntime-gpu" in (tmp_path / "gpu" / "requirements-gpu.txt").read_text()


def test_the_check_refuses_a_missing_weight_a_large_plain_file_and_bad_front_matter(space_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(space_folder, broken)
    (broken / "fmblur" / "weights" / "landmarks_resnet18.pt").unlink()
    with pytest.raises(space.SpaceError, match="landmarks_resnet18"):
        space.check(broken)
    shutil.copy(space_folder / "fmblur" / "weights" / "landmarks_resnet18.pt", broken / "fmblur" / "weights")
    (broken / "video.mp4").write_bytes(b"\0" * (space.HUB_MAX_PLAIN_BYTES + 1))
    with pytest.raises(space.SpaceError, match="over 10 MB"):
        space.check(broken)
    (broken / "video.mp4").unlink()
    readme = broken / "README.md"
    readme.write_text(readme.read_text().replace("sdk: docker", "sdk: gradio"))
    with pytest.raises(space.SpaceError, match="sdk must be docker"):
        space.check(broken)


def test_build_refuses_a_folder_in_use_and_the_command_says_so(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert space.main(["build", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
