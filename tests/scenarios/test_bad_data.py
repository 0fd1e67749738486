"""Bad data-set files (issue 14, reliability review defect 9 and §5 "--data-root with Fashion-MNIST").

Each bad Fashion-MNIST release goes through the real CLI (``unlearnbench run --scenario fmnist-10pct
--data-root ...``), which fails at load, before any training: exit 2, one message naming the file
and what was expected, no traceback. The GPU-scale data sets (CIFAR-10, Tiny ImageNet, CUB-200,
the CLIP ones) are checked by direct loader calls here and in their own test modules.

These cases use each data set's real definition (``DEFINITION``), never a ``.small()`` one.
"""
from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from unlearnbench.data import Definition, read_idx, read_idx_set
from unlearnbench.errors import DataNotFound

from helpers import idx_bytes

STEMS = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def good(n_train=20, n_test=10, side=28):
    rng = np.random.default_rng(0)
    return {"train_x": idx_bytes(rng.integers(0, 256, (n_train, side, side))),
            "train_y": idx_bytes(np.arange(n_train) % 10),
            "test_x": idx_bytes(rng.integers(0, 256, (n_test, side, side))),
            "test_y": idx_bytes(np.arange(n_test) % 10)}


def header(*dims, code=0x08):
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def _gz(raw):
    return gzip.compress(raw)


# id -> (what to change: {role: bytes, or (".gz", bytes) for a file named .gz}, what the message must say)
CASES = {
    "not-gzip-gz": ({"train_x": (".gz", b"these bytes are not gzip at all" * 4)},
                    r"train-images-idx3-ubyte.gz is named .gz but is not a readable gzip file"),
    "truncated-gz": ({"train_x": (".gz", _gz(good()["train_x"])[:200])},
                     r"train-images-idx3-ubyte.gz is a truncated gzip file"),
    "ndim-200": ({"train_x": struct.pack(">HBB", 0, 0x08, 200) + b"\0" * 40},
                 r"train-images-idx3-ubyte: expected an IDX file of 3 dimensions, its header says 200"),
    "labels-3d": ({"test_y": idx_bytes(np.zeros((10, 1, 1)))},
                  r"t10k-labels-idx1-ubyte: expected an IDX file of 1 dimension, its header says 3"),
    "header-cut": ({"train_x": header(20, 28, 28)[:9]},
                   r"train-images-idx3-ubyte is truncated or corrupt: its header declares 3 dimensions"),
    "body-short": ({"train_x": header(20, 28, 28) + b"\0" * 1000},
                   r"train-images-idx3-ubyte is truncated or corrupt: header says \(20, 28, 28\) \(15,680 bytes\), "
                   r"found 1,000"),
    "body-long": ({"test_x": header(10, 28, 28) + b"\0" * (10 * 784 + 5)},
                  r"t10k-images-idx3-ubyte is truncated or corrupt: header says \(10, 28, 28\)"),
    "not-ubyte": ({"train_y": header(20, code=0x0D) + b"\0" * 80},
                  r"train-labels-idx1-ubyte is not an unsigned-byte IDX file \(magic 00000d01"),
    "zero-length": ({"test_y": b""}, r"t10k-labels-idx1-ubyte is not an IDX file \(too short: 0 bytes\)"),
    "images-10x10": ({"train_x": good(side=10)["train_x"]},
                     r"train-images-idx3-ubyte: expected 28x28 images for Fashion-MNIST, found 10x10"),
    "labels-0-255": ({"train_y": idx_bytes(np.arange(20) * 13 % 256)},
                     r"train-labels-idx1-ubyte: Fashion-MNIST labels must run 0..9, found largest label 247"),
    "labels-fewer": ({"test_y": idx_bytes(np.arange(9) % 10)},
                     r"disagree on the number of test samples: 10 images in .*t10k-images-idx3-ubyte, 9 labels in "
                     r".*t10k-labels-idx1-ubyte"),
    "small-set": ({}, r"train-images-idx3-ubyte: expected 60,000 train images for Fashion-MNIST, found 20"),
    "small-set-gz": ({k: (".gz", _gz(v)) for k, v in good().items()},
                     r"train-images-idx3-ubyte.gz: expected 60,000 train images for Fashion-MNIST, found 20"),
}


def write_release(root, change):
    root.mkdir(parents=True, exist_ok=True)
    for role, raw in {**good(), **change}.items():
        if isinstance(raw, tuple):
            (root / (STEMS[role] + raw[0])).write_bytes(raw[1])
        else:
            (root / STEMS[role]).write_bytes(raw)
    return root


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_fmnist_files_through_the_cli(case, tmp_path):
    from unlearnbench.cli import main

    change, message = CASES[case]
    data = write_release(tmp_path / "data", change)
    r = CliRunner().invoke(main, ["run", "--scenario", "fmnist-10pct", "--data-root", str(data), "--seeds", "0", "-q",
                                  "--store", str(tmp_path / "store"), "--runs-dir", str(tmp_path / "runs")])
    out = r.output
    assert r.exit_code == 2, out
    assert isinstance(r.exception, SystemExit), r.exception  # an error message, not a crash
    assert "Traceback" not in out
    assert re.search(message, " ".join(out.split())), out  # the file and the expected value are named
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("run.json"))


def test_three_of_four_files_names_the_missing_one(tmp_path):
    from unlearnbench.cli import main

    data = write_release(tmp_path / "data", {})
    (data / STEMS["test_y"]).unlink()
    r = CliRunner().invoke(main, ["run", "--scenario", "fmnist-10pct", "--data-root", str(data), "--seeds", "0", "-q",
                                  "--store", str(tmp_path / "store"), "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "lacks t10k-labels-idx1-ubyte (or its .gz)" in " ".join(r.output.split()), r.output


def test_idx_header_with_absurd_ndim_named_without_an_expected_ndim(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(struct.pack(">HBB", 0, 0x08, 200) + b"\0" * 40)
    with pytest.raises(DataNotFound, match="its header declares 200 dimensions, which need 804 header bytes"):
        read_idx(p)


def test_idx_train_and_test_of_different_sizes_without_a_side(tmp_path):
    rel = write_release(tmp_path, {"test_x": good(side=10)["test_x"]})
    files = {k: rel / v for k, v in STEMS.items()}
    with pytest.raises(DataNotFound, match=r"train images in .* are 28x28 but test images in .* are 10x10"):
        read_idx_set(files, "X", Definition("X", classes=10))


def test_a_valid_small_set_reads_the_same_with_and_without_a_definition(tmp_path):
    """The check only refuses: on valid files the arrays, bytes (the fingerprint's input) are unchanged."""
    rel = write_release(tmp_path, {})
    files = {k: rel / v for k, v in STEMS.items()}
    a = read_idx_set(files, "Fashion-MNIST")
    b = read_idx_set(files, "Fashion-MNIST", Definition("Fashion-MNIST", side=28, classes=10))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] == 20 and a[3] == b[3]
    assert a[3] == [good()[k] for k in ("train_x", "train_y", "test_x", "test_y")]


# -- the GPU-scale data sets: direct loader calls, with their real definitions --------------------------

def test_cifar10_small_set_refused(tmp_path):
    from unlearnbench.scenarios import cifar10

    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    for b in cifar10.BATCHES:
        rec = np.concatenate([(np.arange(10) % 10).astype(np.uint8)[:, None],
                              rng.integers(0, 256, (10, 3072), dtype=np.uint8)], axis=1)
        (d / f"{b}.bin").write_bytes(rec.tobytes())
    with pytest.raises(DataNotFound, match=r"cifar-10-batches-bin: data_batch_1.bin, .*data_batch_5.bin: expected "
                                           r"50,000 train images for CIFAR-10, found 50"):
        cifar10.load(str(tmp_path))


def test_mnist_bad_gz_and_small_set_refused(tmp_path):
    from unlearnbench.scenarios.clip.datasets import load_mnist

    raw = write_release(tmp_path / "MNIST" / "raw", {"test_x": (".gz", b"\x1f\x8b" + b"junk" * 10)})
    with pytest.raises(DataNotFound, match="t10k-images-idx3-ubyte.gz is named .gz but is not a readable gzip file"):
        load_mnist(str(tmp_path))
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    (raw / "t10k-images-idx3-ubyte").write_bytes(good()["test_x"])
    with pytest.raises(DataNotFound, match="expected 60,000 train images for MNIST, found 20"):
        load_mnist(str(tmp_path))
