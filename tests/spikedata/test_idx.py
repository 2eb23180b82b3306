"""IDX reader on the real MNIST / EMNIST sample files, and its errors on corrupt copies."""

import gzip
import struct

import numpy as np
import pytest

from spikedata.datasets.shared.images import load_idx_pair
from spikedata.errors import DatasetError
from spikedata.io.idx import IdxError, read_emnist_mapping, read_idx, transpose_images

T10K_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
EMNIST_SUBSET = "emnist-balanced-test-18496to18799"


@pytest.fixture(scope="module")
def mnist_dir(shared_data):
    return shared_data / "mnist"


@pytest.fixture(scope="module")
def t10k(mnist_dir):
    return read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz"), read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")


def test_mnist_test_set(t10k):
    images, labels = t10k
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == T10K_LABEL_COUNTS
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert images.max() == 255 and images.min() == 0
    # MNIST digits are centred by centre of mass in a 28 x 28 field; the top row is empty in every test image
    assert images[:, 0, :].max() == 0
    rows = (images.astype(np.float64).sum(axis=(0, 2)) * np.arange(28)).sum() / images.astype(np.float64).sum()
    assert 13.0 < rows < 15.0


def test_mnist_train_labels(mnist_dir):
    labels = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,)
    assert np.bincount(labels).tolist() == TRAIN_LABEL_COUNTS
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_raw_equals_gzip(mnist_dir, t10k, tmp_path):
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()))
    # content decides, not the name: a raw file called .gz and a gzip file without suffix both read
    misnamed = tmp_path / "raw-but-named.gz"
    misnamed.write_bytes(raw.read_bytes())
    assert np.array_equal(read_idx(raw), t10k[0])
    assert np.array_equal(read_idx(misnamed), t10k[0])


def test_load_pair_counts_and_dtype(mnist_dir, t10k):
    images, labels = load_idx_pair(mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert labels.dtype == np.int16 and np.array_equal(labels, t10k[1])
    assert np.array_equal(images, t10k[0])


def test_emnist_subset_transposed(shared_data):
    d = shared_data / "emnist" / "derived_idx"
    raw = read_idx(d / f"{EMNIST_SUBSET}-images-idx3-ubyte")
    images, labels = load_idx_pair(
        d / f"{EMNIST_SUBSET}-images-idx3-ubyte", d / f"{EMNIST_SUBSET}-labels-idx1-ubyte", transposed=True
    )
    assert images.shape == (304, 28, 28) and labels.shape == (304,)
    assert np.array_equal(images, raw.transpose(0, 2, 1))
    assert 0 <= labels.min() and labels.max() < 47
    names = read_emnist_mapping(shared_data / "emnist" / "emnist-balanced-mapping.txt")
    assert len(names) == 47 and min(names) == 0
    assert [names[i] for i in (0, 9, 10, 35, 36, 46)] == ["0", "9", "A", "Z", "a", "t"]
    # Orientation: '1' and 'I' are tall strokes once transposed back (they are wide in the stored orientation).
    tall = np.isin(labels, [1, 18])
    assert tall.sum() == 10

    def extent(ink, axis):
        return np.mean([np.ptp(np.flatnonzero(i.any(axis=axis))) for i in ink])

    ink = images[tall] > 128
    assert extent(ink, 1) > 1.5 * extent(ink, 0)  # vertical extent (rows with ink) > horizontal


def test_transpose_images_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[n, H, W\]"):
        transpose_images(np.zeros((28, 28), np.uint8))


def _idx(shape, dtype_code=0x08, payload=None):
    header = struct.pack(">HBB", 0, dtype_code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    n = int(np.prod(shape))
    return header + (payload if payload is not None else bytes(range(256)) * (n // 256) + bytes(n % 256))


def test_other_dtypes_and_big_endian(tmp_path):
    values = np.array([[1, -2, 300], [70000, 5, -6]], dtype=">i4")
    p = tmp_path / "ints.idx"
    p.write_bytes(_idx((2, 3), 0x0C, values.tobytes()))
    out = read_idx(p)
    assert out.dtype == np.int32 and out.dtype.isnative and out.tolist() == values.tolist()


def test_wrong_magic(tmp_path, mnist_dir):
    data = bytearray(gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    data[0] = 0x12
    p = tmp_path / "bad-magic"
    p.write_bytes(bytes(data))
    with pytest.raises(IdxError, match=r"bad-magic: wrong magic number 0x12000801"):
        read_idx(p)


def test_unknown_type_code(tmp_path):
    p = tmp_path / "badtype"
    p.write_bytes(_idx((4,), 0x07, bytes(4)))
    with pytest.raises(IdxError, match="unknown IDX type code 0x07"):
        read_idx(p)


def test_truncated_raw(tmp_path, mnist_dir):
    data = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    p = tmp_path / "cut"
    p.write_bytes(data[:-100])
    with pytest.raises(IdxError, match=r"cut: truncated: header declares shape \[10000, 28, 28\] \(7840000 data "
                                       r"bytes\) but only 7839900"):  # fmt: skip
        read_idx(p)
    p.write_bytes(data[:10])
    with pytest.raises(IdxError, match="truncated header"):
        read_idx(p)


def test_truncated_gzip(tmp_path, mnist_dir):
    data = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    p = tmp_path / "cut.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(IdxError, match="cut.gz: corrupt or truncated gzip stream"):
        read_idx(p)


def test_trailing_bytes(tmp_path):
    p = tmp_path / "long"
    p.write_bytes(_idx((3,)) + b"\x00\x01")
    with pytest.raises(IdxError, match="2 unexpected bytes after the 3 data bytes"):
        read_idx(p)


def test_mismatched_counts(tmp_path, mnist_dir):
    labels = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    short = tmp_path / "labels-9999"
    short.write_bytes(struct.pack(">HBBI", 0, 8, 1, 9999) + labels[8:-1])
    with pytest.raises(DatasetError, match="holds 10000 images but .*labels-9999 holds 9999 labels"):
        load_idx_pair(mnist_dir / "t10k-images-idx3-ubyte.gz", short)


def test_mapping_variants_and_errors(tmp_path):
    letters = tmp_path / "letters.txt"
    letters.write_text("1 65 97\n2 66 98\n3 67 99\n")
    assert read_emnist_mapping(letters) == {1: "Aa", 2: "Bb", 3: "Cc"}
    dup = tmp_path / "dup.txt"
    dup.write_text("0 48\n0 49\n")
    with pytest.raises(IdxError, match="dup.txt:2: label 0 appears twice"):
        read_emnist_mapping(dup)
    gap = tmp_path / "gap.txt"
    gap.write_text("0 48\n2 50\n")
    with pytest.raises(IdxError, match="consecutive"):
        read_emnist_mapping(gap)
    junk = tmp_path / "junk.txt"
    junk.write_text("0 48\nzero 49\n")
    with pytest.raises(IdxError, match="junk.txt:2: expected"):
        read_emnist_mapping(junk)
