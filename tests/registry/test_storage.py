"""Artifacts are stored once per version, addressed by URI and refused when their bytes change."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from capstan.errors import Conflict, InvalidInput, NotFound
from capstan.registry.storage import CHUNK_SIZE, ArtifactStore, ArtifactTampered, sha256_of

PAYLOAD = b"model bytes \x00\x01\x02" * 100


def memory_root() -> str:
    # The memory filesystem is one per process: each test gets its own prefix.
    return f"memory://capstan-tests/{uuid.uuid4().hex}"


def test_a_local_folder_round_trips_an_artifact(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    stored = store.put(PAYLOAD, model="churn", version=1, filename="model.onnx")
    assert stored.uri == f"file://{tmp_path}/artifacts/churn/1/model.onnx"
    assert store.open_verified(stored.uri, stored.sha256) == PAYLOAD


def test_a_memory_url_round_trips_an_artifact() -> None:
    store = ArtifactStore(memory_root())
    stored = store.put(PAYLOAD, model="churn", version=2, filename="model.skops")
    assert stored.uri.startswith("memory://")
    assert store.open_verified(stored.uri, stored.sha256) == PAYLOAD


def test_the_recorded_digest_and_size_are_hashlibs(tmp_path: Path) -> None:
    stored = ArtifactStore(str(tmp_path)).put(PAYLOAD, model="m", version=1, filename="f.bin")
    assert stored.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert stored.size == len(PAYLOAD)


def test_a_file_larger_than_one_chunk_is_copied_whole_from_a_path(tmp_path: Path) -> None:
    source = tmp_path / "big.onnx"
    source.write_bytes(bytes(range(256)) * (CHUNK_SIZE // 256 * 2 + 3))
    store = ArtifactStore(f"file://{tmp_path}/store")
    stored = store.put(source, model="big", version=1, filename="model.onnx")
    assert stored.sha256 == sha256_of(source) == hashlib.sha256(source.read_bytes()).hexdigest()
    assert stored.size == source.stat().st_size
    assert store.open_verified(stored.uri, stored.sha256) == source.read_bytes()


def test_a_stored_version_is_never_overwritten(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    stored = store.put(PAYLOAD, model="m", version=1, filename="model.onnx")
    with pytest.raises(Conflict):
        store.put(b"other bytes", model="m", version=1, filename="model.onnx")
    assert store.open_verified(stored.uri, stored.sha256) == PAYLOAD


def test_a_stored_version_is_never_overwritten_in_memory() -> None:
    store = ArtifactStore(memory_root())
    store.put(PAYLOAD, model="m", version=1, filename="model.onnx")
    with pytest.raises(Conflict):
        store.put(b"other bytes", model="m", version=1, filename="model.onnx")


def test_one_changed_byte_on_disk_is_reported_as_tampering(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    stored = store.put(PAYLOAD, model="m", version=1, filename="model.onnx")
    on_disk = tmp_path / "m" / "1" / "model.onnx"
    altered = bytearray(on_disk.read_bytes())
    altered[7] ^= 0x01
    on_disk.write_bytes(bytes(altered))
    with pytest.raises(ArtifactTampered) as caught:
        store.open_verified(stored.uri, stored.sha256)
    assert caught.value.status == 409
    assert caught.value.slug == "artifact-tampered"
    assert caught.value.expected == stored.sha256
    assert caught.value.actual == hashlib.sha256(bytes(altered)).hexdigest()


def test_a_missing_artifact_is_not_found(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    stored = store.put(PAYLOAD, model="m", version=1, filename="model.onnx")
    (tmp_path / "m" / "1" / "model.onnx").unlink()
    with pytest.raises(NotFound):
        store.open_verified(stored.uri, stored.sha256)


def test_a_uri_outside_the_store_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not an artifact")
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(InvalidInput):
        store.open_verified(f"file://{secret}", sha256_of(secret))
    with pytest.raises(InvalidInput):
        store.open_verified(f"file://{tmp_path}/store/m/1/../../../secret.txt", sha256_of(secret))


@pytest.mark.parametrize(
    ("model", "filename"), [("../escape", "model.onnx"), ("m", "../model.onnx"), ("", "f")]
)
def test_names_that_would_leave_the_version_folder_are_refused(
    tmp_path: Path, model: str, filename: str
) -> None:
    with pytest.raises(InvalidInput):
        ArtifactStore(str(tmp_path)).put(PAYLOAD, model=model, version=1, filename=filename)
