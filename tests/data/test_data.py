import numpy as np
import pytest

from edgekit.data import load_data, make_splits
from edgekit.data.splits import parse_fractions
from edgekit.errors import DataError, InputError


def test_npz_reads_inputs_and_labels(digits_npz):
    data = load_data(digits_npz)
    assert len(data) == 1797 and data.names == ["x"]
    assert data.labels.dtype == np.int64 and data.arrays["x"].dtype == np.float32


def test_bind_maps_x_to_the_single_input_and_rejects_wrong_names(digits_npz):
    data = load_data(digits_npz)
    assert data.bind(["pixel_values"]).names == ["pixel_values"]
    with pytest.raises(DataError, match="input_ids"):
        data.bind(["input_ids", "attention_mask"])


def test_splits_are_disjoint_seeded_and_complete(digits_npz):
    data = load_data(digits_npz)
    a = make_splits(data, (0.7, 0.1, 0.2), seed=3)
    b = make_splits(data, (0.7, 0.1, 0.2), seed=3)
    c = make_splits(data, (0.7, 0.1, 0.2), seed=4)
    parts = [set(a.train.indices), set(a.calib.indices), set(a.eval.indices)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(map(len, parts)) == len(data)
    assert np.array_equal(a.eval.indices, b.eval.indices)
    assert not np.array_equal(a.eval.indices, c.eval.indices)


def test_separate_eval_data_is_used_whole(digits_npz):
    data = load_data(digits_npz)
    splits = make_splits(data.subset(np.arange(1000)), (0.7, 0.1, 0.2), 0, eval_data=data.subset(np.arange(1000, 1797)))
    assert len(splits.eval) == 797 and len(splits.train) + len(splits.calib) == 1000


def test_bad_split_text_is_an_input_error():
    with pytest.raises(InputError, match="--split"):
        parse_fractions("0.5,0.5")


def test_folder_of_single_sample_npz(tmp_path):
    for i, n in enumerate((5, 7, 9)):
        np.savez(tmp_path / f"s{i}.npz", input_ids=np.arange(n)[None], y=np.array([i]))
    data = load_data(tmp_path)
    assert len(data) == 3 and not data.batchable
    shapes = [inputs["input_ids"].shape for inputs, _ in data.batches(8)]
    assert shapes == [(1, 5), (1, 7), (1, 9)]


def test_image_folder_with_preprocess_yaml(tmp_path):
    from PIL import Image

    x = np.random.default_rng(0).integers(0, 255, (4, 12, 10, 3), dtype=np.uint8)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(x[i + (2 if cls == "dog" else 0)]).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "preprocess.yaml").write_text("size: [8, 6]\nmean: [0.5, 0.5, 0.5]\nstd: [0.25, 0.25, 0.25]\n")
    data = load_data(tmp_path)
    assert data.arrays["x"].shape == (4, 3, 8, 6)
    assert data.labels.tolist() == [0, 0, 1, 1] and data.label_names == ["cat", "dog"]
    assert data.preprocess["layout"] == "NCHW"


def test_corrupt_npz_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="corrupt"):
        load_data(bad)


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError):
        load_data(path)
