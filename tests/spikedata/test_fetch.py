"""`spikedata.fetch` against a local HTTP server (127.0.0.1, in a thread) that supports Range requests."""

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from spikedata.fetch import FetchError, fetch


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut: dict[str, int] = {}  # path -> bytes sent before the connection is dropped (once)
    ignore_range = False
    log: list[tuple[str, str | None]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        path = self.path.lstrip("/")
        rng = self.headers.get("Range")
        self.log.append((path, rng))
        data = self.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and not self.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if path in self.cut:
            self.wfile.write(body[: self.cut.pop(path)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    _Handler.files, _Handler.cut, _Handler.log, _Handler.ignore_range = {}, {}, [], False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield _Handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _payload(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _manifest(tmp_path, base, files, extra="", name="toy"):
    lines = [
        "schema = 1", f'name = "{name}"', 'title = "Toy data"', 'license = "CC0"', f'mirrors = ["{base}/"]', extra,
    ]  # fmt: skip
    for fname, data, more in files:
        lines += ["[[files]]", f'name = "{fname}"', f"size = {len(data)}", f'sha256 = "{_sha(data)}"', more]
    p = tmp_path / f"{name}.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_download_and_skip_present(server, tmp_path):
    handler, base = server
    a, b = _payload(3_000_000, 1), _payload(1234, 2)
    handler.files.update({"a.bin": a, "b.bin": b})
    manifest = _manifest(tmp_path, base, [("a.bin", a, ""), ("b.bin", b, "")])
    dest = tmp_path / "data"
    result = fetch(manifest, dest, progress=False)
    assert result.files == {"a.bin": "downloaded", "b.bin": "downloaded"}
    assert (dest / "a.bin").read_bytes() == a and (dest / "b.bin").read_bytes() == b
    assert sorted(p.name for p in dest.iterdir()) == ["a.bin", "b.bin"]  # no .part left
    handler.log.clear()
    assert fetch(manifest, dest, progress=False).files == {"a.bin": "present", "b.bin": "present"}
    assert handler.log == []


def test_resume_after_interruption_in_one_call(server, tmp_path):
    handler, base = server
    a = _payload(2_500_000, 3)
    handler.files["a.bin"] = a
    handler.cut["a.bin"] = 700_000
    dest = tmp_path / "data"
    fetch(_manifest(tmp_path, base, [("a.bin", a, "")]), dest, progress=False)
    assert (dest / "a.bin").read_bytes() == a
    assert handler.log == [("a.bin", None), ("a.bin", "bytes=700000-")]


def test_resume_from_earlier_part_file(server, tmp_path):
    handler, base = server
    a = _payload(1_000_000, 4)
    handler.files["a.bin"] = a
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "a.bin.part").write_bytes(a[:400_000])
    fetch(_manifest(tmp_path, base, [("a.bin", a, "")]), dest, progress=False)
    assert (dest / "a.bin").read_bytes() == a and not (dest / "a.bin.part").exists()
    assert handler.log == [("a.bin", "bytes=400000-")]


def test_server_without_range_support_restarts(server, tmp_path):
    handler, base = server
    a = _payload(500_000, 5)
    handler.files["a.bin"] = a
    handler.ignore_range = True
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "a.bin.part").write_bytes(b"\xff" * 1000)  # stale partial data must not end up in the file
    fetch(_manifest(tmp_path, base, [("a.bin", a, "")]), dest, progress=False)
    assert (dest / "a.bin").read_bytes() == a
    assert [r for _, r in handler.log] == ["bytes=1000-", None]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    handler, base = server
    a = _payload(100_000, 6)
    handler.files["a.bin"] = a[:-1] + bytes([a[-1] ^ 1])  # same size, one bit differs
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=rf"checksum mismatch for a.bin: sha256 \w+, expected {_sha(a)}"):
        fetch(_manifest(tmp_path, base, [("a.bin", a, "")]), dest, progress=False)
    assert list(dest.iterdir()) == []


def test_wrong_size_is_rejected(server, tmp_path):
    handler, base = server
    a = _payload(1000, 7)
    handler.files["a.bin"] = a + b"extra"
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match="downloaded 1005 bytes, the manifest says 1000"):
        fetch(_manifest(tmp_path, base, [("a.bin", a, "")]), dest, progress=False)
    assert list(dest.iterdir()) == []


def test_falls_back_to_next_mirror_and_mirror_option(server, tmp_path):
    handler, base = server
    a = _payload(5000, 8)
    handler.files["good/a.bin"] = a
    extra = f'mirrors = ["{base}/missing/", "{base}/good/"]'
    manifest = _manifest(tmp_path, base, [("a.bin", a, "")]).read_text().replace(f'mirrors = ["{base}/"]', extra)
    (tmp_path / "toy.toml").write_text(manifest)
    fetch(tmp_path / "toy.toml", tmp_path / "d1", progress=False)
    assert [p for p, _ in handler.log] == ["missing/a.bin", "good/a.bin"]
    handler.log.clear()
    fetch(tmp_path / "toy.toml", tmp_path / "d2", mirror=f"{base}/good", progress=False)
    assert [p for p, _ in handler.log] == ["good/a.bin"]
    assert (tmp_path / "d2" / "a.bin").read_bytes() == a


def test_unreachable_keeps_part_for_resume(server, tmp_path):
    handler, base = server
    a = _payload(300_000, 9)
    handler.files["a.bin"] = a
    handler.cut["a.bin"] = 100_000
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=r"100000 bytes kept in .*a.bin.part; run the command again to resume"):
        fetch(_manifest(tmp_path, base, [("a.bin", a, "")]), dest, progress=False, retries=1)
    assert not (dest / "a.bin").exists() and (dest / "a.bin.part").stat().st_size == 100_000
    fetch(_manifest(tmp_path, base, [("a.bin", a, "")]), dest, progress=False)
    assert (dest / "a.bin").read_bytes() == a


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_archive_members_are_extracted_and_verified(server, tmp_path):
    handler, base = server
    x, y = _payload(2000, 10), _payload(3000, 11)
    archive = _zip({"inner/x.gz": x, "inner/y.gz": y})
    handler.files["all.zip"] = archive
    extra = f'[[archives]]\nname = "all.zip"\nurl = "{base}/all.zip"\nsize = {len(archive)}'
    files = [("x.gz", x, 'archive = "all.zip"\nmember = "inner/x.gz"')]
    result = fetch(_manifest(tmp_path, base, files, extra), tmp_path / "d", progress=False)
    assert result.files == {"x.gz": "extracted"}
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["x.gz"]  # archive removed, y not wanted
    assert (tmp_path / "d" / "x.gz").read_bytes() == x
    bad = [("y.gz", x, 'archive = "all.zip"\nmember = "inner/y.gz"')]  # manifest pins x's hash for y
    with pytest.raises(FetchError, match="checksum mismatch for y.gz extracted from all.zip"):
        fetch(_manifest(tmp_path, base, bad, extra), tmp_path / "e", progress=False)
    assert not (tmp_path / "e" / "y.gz").exists() and not (tmp_path / "e" / "y.gz.part").exists()


def test_extract_zip_and_refuse_escape(server, tmp_path):
    handler, base = server
    good = _zip({"Train/0/a.bin": b"abc", "Train/1/b.bin": b"de"})
    handler.files["Train.zip"] = good
    fetch(_manifest(tmp_path, base, [("Train.zip", good, 'extract = "zip"')]), tmp_path / "d", progress=False)
    assert (tmp_path / "d" / "Train" / "1" / "b.bin").read_bytes() == b"de"
    evil = _zip({"../evil.txt": b"x"})
    handler.files["evil.zip"] = evil
    with pytest.raises(FetchError, match="outside"):
        fetch(_manifest(tmp_path, base, [("evil.zip", evil, 'extract = "zip"')]), tmp_path / "e", progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_licensed_dataset_without_url(tmp_path):
    p = tmp_path / "ti.toml"
    p.write_text(
        'schema = 1\nname = "ti"\ntitle = "TI46 speech"\nlicense = "LDC User Agreement"\naccess = "licensed"\n'
        'obtain = "Order it from the LDC (catalog LDC93S9)."\n[[files]]\nname = "ti46"\n'
    )
    with pytest.raises(FetchError) as info:
        fetch(p, tmp_path / "d", progress=False)
    msg = str(info.value)
    assert "cannot be downloaded automatically" in msg and "LDC93S9" in msg and "ti46" in msg
    assert "as `source` to `spikedata encode ti`" in msg and not (tmp_path / "d").exists()  # the CLI says --source


def test_md5_only_zip_is_verified_and_extracted(server, tmp_path):
    """N-MNIST's zips are published with an md5 only: fetch verifies that, then unzips."""
    handler, base = server
    good = _zip({"Test/7/x.bin": b"\x01\x02\x03\x04\x05"})
    handler.files["Test.zip"] = good
    md5 = hashlib.md5(good).hexdigest()
    manifest = tmp_path / "nm.toml"
    manifest.write_text(
        f'schema = 1\nname = "nm"\ntitle = "t"\nlicense = "CC"\n[[files]]\nname = "Test.zip"\n'
        f'url = "{base}/Test.zip"\nmd5 = "{md5}"\nextract = "zip"\n'
    )
    fetch(manifest, tmp_path / "d", progress=False)
    assert (tmp_path / "d" / "Test" / "7" / "x.bin").read_bytes() == b"\x01\x02\x03\x04\x05"
    manifest.write_text(manifest.read_text().replace(md5, "0" * 32))
    with pytest.raises(FetchError, match="md5"):
        fetch(manifest, tmp_path / "e", progress=False)
    assert not (tmp_path / "e" / "Test.zip").exists()


def test_real_nmnist_manifest_is_md5_verified_zips():
    from spikedata.manifest import load_manifest

    files = {f.name: f for f in load_manifest("nmnist").files}
    assert set(files) == {"Train.zip", "Test.zip"}
    assert files["Test.zip"].md5 == "69ca8762b2fe404d9b9bad1103e97832" and files["Test.zip"].extract == "zip"
