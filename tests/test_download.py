"""Downloads against a real HTTP server on 127.0.0.1 (the standard library's threaded server).

The published set 'mnist' is replaced by four small IDX files whose SHA-256 and sizes the
test knows, served by mirrors on the loopback server; the cache is a temporary HOME.
"""

import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import nnlab
from nnlab.cli import main
from nnlab.data import ChecksumError, DataNotFoundError, DownloadError, write_idx
from nnlab.data._published import PublishedFile, PublishedSet

REAL_MNIST = nnlab.data.PUBLISHED["mnist"]
MNIST_FOLDER = nnlab.data.find("mnist")  # where the suite finds the real MNIST (NNLAB_DATA_DIR or the cache), if at all
NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def _gz(tmp_path, array) -> bytes:
    path = tmp_path / "x.gz"
    write_idx(path, array)
    return path.read_bytes()


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """{file name: bytes} of a small MNIST-like set (8 training and 4 test digits)."""
    tmp = tmp_path_factory.mktemp("payload")
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
        (np.arange(8) % 10).astype(np.uint8),
        rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        np.array([3, 1, 4, 1], np.uint8),
    ]
    return {name: _gz(tmp, a) for name, a in zip(NAMES, arrays, strict=True)}


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`; `server.plans[path]` lists what to do for the next requests of a path:
    '404', '500', 'cut' (half the bytes, then close), 'slow' (say nothing for `server.slow` s),
    'wrong' (same length, other bytes), 'norange' (ignore a Range header), 'delay' (wait, then serve)."""

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.log.append((self.path, self.headers.get("Range")))
            plan = srv.plans.get(self.path)
            action = plan.pop(0) if plan else "ok"
        body = srv.files.get(self.path)
        if action == "slow":
            time.sleep(srv.slow)
            return
        if action == "delay":
            time.sleep(0.5)
        if body is None or action == "404":
            self.send_error(404)
            return
        if action == "500":
            self.send_error(500)
            return
        if action == "wrong":
            body = bytes(b ^ 0xFF for b in body)
        start = 0
        rng = self.headers.get("Range")
        if rng and action != "norange":
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest[: len(rest) // 2] if action == "cut" else rest)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.plans, srv.log, srv.slow, srv.lock = {}, {}, [], 1.0, threading.Lock()
    srv.url = f"http://127.0.0.1:{srv.server_port}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _published(payload, mirrors) -> PublishedSet:
    return PublishedSet(
        tuple(PublishedFile(n, len(b), hashlib.sha256(b).hexdigest()) for n, b in payload.items()), tuple(mirrors)
    )


@pytest.fixture
def home(tmp_path, monkeypatch, server, payload):
    """A fresh HOME; 'mnist' published on two loopback mirrors /a/ and /b/ (only /a/ has files until a test adds)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("NNLAB_DATA_DIR", "NNLAB_DATA_MIRROR", "NNLAB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(nnlab.data._places, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setitem(nnlab.data.PUBLISHED, "mnist", _published(payload, [f"{server.url}/a/", f"{server.url}/b/"]))
    server.files.update({f"/a/{n}": b for n, b in payload.items()})
    return tmp_path / "home"


def _download(**kwargs):
    return nnlab.data.download(
        "mnist",
        timeout=kwargs.pop("timeout", 2.0),
        retries=kwargs.pop("retries", 2),
        backoff=0.01,
        progress=False,
        **kwargs,
    )


def _requests(server, path):
    return [r for p, r in server.log if p == path]


def test_success_fills_the_cache_and_loads(home, server, payload):
    folder = _download()
    assert folder == home / ".cache" / "nnlab" / "mnist"
    assert {n: (folder / n).read_bytes() for n in NAMES} == payload
    manifest = (folder / "SHA256SUMS").read_text()
    assert all(f"{hashlib.sha256(b).hexdigest()}  {n}" in manifest for n, b in payload.items())
    assert not list(folder.glob(".*.part"))
    train, test = nnlab.mnist()
    assert train.x.shape == (8, 28, 28, 1) and test.y.tolist() == [3, 1, 4, 1]
    served = len(server.log)
    assert _download() == folder and nnlab.mnist()[0].n == 8
    assert len(server.log) == served == 4  # nothing fetched twice


def test_404_on_first_mirror_then_second(home, server, payload):
    server.files.pop(f"/a/{NAMES[0]}")
    server.files[f"/b/{NAMES[0]}"] = payload[NAMES[0]]
    folder = _download()
    assert (folder / NAMES[0]).read_bytes() == payload[NAMES[0]]
    assert len(_requests(server, f"/a/{NAMES[0]}")) == 1  # a 404 is not retried
    assert len(_requests(server, f"/b/{NAMES[0]}")) == 1


def test_500_is_retried(home, server, payload):
    server.plans[f"/a/{NAMES[1]}"] = ["500", "500"]
    folder = _download(retries=2)
    assert (folder / NAMES[1]).read_bytes() == payload[NAMES[1]]
    assert len(_requests(server, f"/a/{NAMES[1]}")) == 3 and not _requests(server, f"/b/{NAMES[1]}")


def test_cut_response_is_resumed_with_range(home, server, payload):
    server.plans[f"/a/{NAMES[0]}"] = ["cut"]
    folder = _download()
    assert (folder / NAMES[0]).read_bytes() == payload[NAMES[0]]
    half = len(payload[NAMES[0]]) // 2
    assert _requests(server, f"/a/{NAMES[0]}") == [None, f"bytes={half}-"]


def test_server_that_ignores_range_restarts_from_zero(home, server, payload):
    server.plans[f"/a/{NAMES[0]}"] = ["cut", "norange"]
    folder = _download()
    assert (folder / NAMES[0]).read_bytes() == payload[NAMES[0]]
    assert len(_requests(server, f"/a/{NAMES[0]}")) == 2


def test_wrong_bytes_are_refused_and_nothing_stays(home, server, payload):
    server.plans[f"/a/{NAMES[0]}"] = ["wrong"]
    with pytest.raises(ChecksumError) as e:
        _download()
    good = hashlib.sha256(payload[NAMES[0]]).hexdigest()
    bad = hashlib.sha256(bytes(b ^ 0xFF for b in payload[NAMES[0]])).hexdigest()
    msg = str(e.value)
    assert NAMES[0] in msg and f"expected {good}" in msg and f"got {bad}" in msg
    assert [p.name for p in (home / ".cache" / "nnlab" / "mnist").iterdir()] == [".lock"]


def test_wrong_bytes_on_first_mirror_then_right_ones(home, server, payload):
    server.plans[f"/a/{NAMES[3]}"] = ["wrong"]
    server.files[f"/b/{NAMES[3]}"] = payload[NAMES[3]]
    assert (_download() / NAMES[3]).read_bytes() == payload[NAMES[3]]


def test_too_slow_server_times_out(home, server):
    server.plans[f"/a/{NAMES[0]}"], server.slow = ["slow", "slow"], 5.0
    start = time.monotonic()
    expected = r"a/train-images-idx3-ubyte.gz: timed out \(no data for 0.2 s\) \(2 tries\)"
    with pytest.raises(DownloadError, match=expected):
        _download(timeout=0.2, retries=1)
    assert time.monotonic() - start < 3.0  # two tries of 0.2 s, not the server's 5 s
    assert not list((home / ".cache" / "nnlab" / "mnist").glob(NAMES[0] + "*"))


def test_offline_is_one_message_saying_where_and_how(home, server, monkeypatch):
    monkeypatch.setenv("NNLAB_OFFLINE", "1")
    with pytest.raises(DownloadError) as e:
        nnlab.mnist()
    msg = str(e.value)
    assert "\n" not in msg and not server.log
    for part in [
        str(home / ".cache" / "nnlab" / "mnist"),
        "system/mnist",
        "NNLAB_OFFLINE=1",
        *NAMES,
        "by hand",
        "NNLAB_DATA_DIR",
        "NNLAB_DATA_MIRROR",
    ]:
        assert part in msg


def test_failed_urls_are_listed(home, server):
    server.files.clear()
    with pytest.raises(DownloadError) as e:
        _download()
    msg = str(e.value)
    assert f"{server.url}/a/{NAMES[0]}: HTTP 404" in msg and f"{server.url}/b/{NAMES[0]}: HTTP 404" in msg


def test_user_mirror_first_with_its_own_manifest(home, server, payload, tmp_path):
    rebuilt = _gz(tmp_path, np.full((8, 28, 28), 7, np.uint8))  # like the project's rebuilt train-images file
    files = {**payload, NAMES[0]: rebuilt}
    server.files.update({f"/m/mnist/{n}": b for n, b in files.items()})
    server.files["/m/mnist/SHA256SUMS"] = "".join(
        f"{hashlib.sha256(b).hexdigest()}  ./{n}\n" for n, b in files.items()
    ).encode()
    folder = _download(mirror=f"{server.url}/m/")
    assert (folder / NAMES[0]).read_bytes() == rebuilt
    assert not any(p.startswith("/a/") for p, _ in server.log)
    assert f"{hashlib.sha256(rebuilt).hexdigest()}  {NAMES[0]}" in (folder / "SHA256SUMS").read_text()
    rows = dict(nnlab.data.verify_folder("mnist"))
    assert "differs from the published file" in rows[folder / NAMES[0]]
    assert "differs" not in rows[folder / NAMES[1]]
    np.testing.assert_array_equal(nnlab.mnist()[0].x[0, :, :, 0], np.float32(7 / 255))


def test_user_mirror_without_manifest_is_held_to_the_published_hashes(home, server, payload, tmp_path, monkeypatch):
    rebuilt = _gz(tmp_path, np.full((8, 28, 28), 7, np.uint8))
    server.files.update({f"/m/mnist/{n}": b for n, b in {**payload, NAMES[0]: rebuilt}.items()})
    monkeypatch.setenv("NNLAB_DATA_MIRROR", f"{server.url}/m")
    folder = _download()
    assert (folder / NAMES[0]).read_bytes() == payload[NAMES[0]]  # the mirror's file was refused, /a/ delivered
    assert [p for p, _ in server.log][:3] == ["/m/mnist/SHA256SUMS", f"/m/mnist/{NAMES[0]}", f"/a/{NAMES[0]}"]


def test_user_mirror_with_an_unreadable_manifest(home, server, payload, monkeypatch):
    server.files.update({f"/m/mnist/{n}": b for n, b in payload.items()})
    server.files["/m/mnist/SHA256SUMS"] = b"\xff\xfe not text"
    monkeypatch.setenv("NNLAB_OFFLINE", "1")
    with pytest.raises(DownloadError, match=r"/m/mnist/SHA256SUMS: expected a UTF-8 text manifest"):
        _download(mirror=f"{server.url}/m")


def test_mirror_must_be_a_url(home):
    with pytest.raises(ValueError, match="mirror: expected a base URL starting with http://"):
        _download(mirror="/some/folder")


def test_explicit_data_dir_that_lacks_the_data_is_an_error_not_a_download(home, server, tmp_path):
    with pytest.raises(DataNotFoundError, match="data_dir .*nowhere does not hold the data"):
        nnlab.mnist(tmp_path / "nowhere")
    assert not server.log


_CHILD = """
import json, sys
import nnlab
from nnlab.data._published import PublishedFile, PublishedSet
spec = json.loads(sys.argv[1])
nnlab.data.PUBLISHED["mnist"] = PublishedSet(tuple(PublishedFile(*f) for f in spec["files"]), tuple(spec["mirrors"]))
open(sys.argv[2] + ".ready", "w").close()
while not __import__("os").path.exists(sys.argv[2] + ".go"):
    __import__("time").sleep(0.01)
print(nnlab.data.download("mnist", timeout=5, retries=0, backoff=0, progress=False))
"""


def test_two_processes_share_one_cache(home, server, payload, tmp_path):
    spec = {"files": [list(f) for f in nnlab.data.PUBLISHED["mnist"].files], "mirrors": [f"{server.url}/a/"]}
    for name in NAMES:
        server.plans[f"/a/{name}"] = ["delay"]
    env = {**os.environ, "HOME": str(home)}
    env.pop("NNLAB_OFFLINE", None)
    gate = str(tmp_path / "gate")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(spec), f"{gate}{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all(os.path.exists(f"{gate}{i}.ready") for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    for i in range(2):
        open(f"{gate}{i}.go", "w").close()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folder = home / ".cache" / "nnlab" / "mnist"
    assert [o.strip() for o, _ in outs] == [str(folder)] * 2
    assert sum("waiting for another process" in err for _, err in outs) == 1
    assert sorted(p for p, _ in server.log) == sorted(f"/a/{n}" for n in NAMES)  # each file fetched once
    assert {n: (folder / n).read_bytes() for n in NAMES} == payload
    assert sorted(p.name for p in folder.iterdir()) == sorted([".lock", "SHA256SUMS", *NAMES])


# The `nnlab data` commands and `nnlab demo`.


def test_cli_data_download_verify_where(home, server, payload, capsys):
    folder = home / ".cache" / "nnlab" / "mnist"
    assert main(["data", "where", "mnist"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(folder) and "not there yet" in err
    assert main(["data", "download", "mnist"]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    assert main(["data", "verify", "mnist"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok (") == 4 and str(folder / NAMES[0]) in out
    (folder / NAMES[2]).write_bytes(gzip.compress(b"tampered"))
    assert main(["data", "verify", "mnist"]) == 2
    assert f"{folder / NAMES[2]}: SHA-256" in capsys.readouterr().err


def test_cli_download_to_a_data_dir_with_a_mirror(home, server, payload, tmp_path, capsys):
    server.files.update({f"/m/mnist/{n}": b for n, b in payload.items()})
    assert main(["data", "download", "mnist", "--data-dir", str(tmp_path / "d"), "--mirror", f"{server.url}/m"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d" / "mnist")
    assert all(p.startswith("/m/") for p, _ in server.log)
    assert nnlab.mnist(tmp_path / "d")[0].n == 8


def test_demo_without_data_or_network_is_one_line(home, monkeypatch, capsys):
    monkeypatch.setenv("NNLAB_OFFLINE", "1")
    assert main(["demo"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("nnlab: error: mnist: not found in ")


@pytest.mark.optax_promotion
def test_demo_downloads_mnist_and_prints_a_compact_summary(home, server, monkeypatch, capsys):
    """The quickstart's path: MNIST from a mirror into a fresh cache, then the lecture's MLP (1 short epoch here)."""
    if MNIST_FOLDER is None:
        pytest.skip("needs MNIST to serve (set NNLAB_DATA_DIR)")
    server.files.update({f"/m/mnist/{p.name}": p.read_bytes() for p in MNIST_FOLDER.iterdir() if p.is_file()})
    monkeypatch.setenv("NNLAB_DATA_MIRROR", f"{server.url}/m")
    monkeypatch.setenv("NNLAB_OFFLINE", "1")
    monkeypatch.setitem(nnlab.data.PUBLISHED, "mnist", REAL_MNIST)
    assert main(["demo", "--epochs", "1", "--train-subset", "10100"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnist-mlp: test error ") and "best epoch 1 of 1" in lines[0]
    assert err.count("SHA-256 checked against") == 4
    assert nnlab.data.find("mnist") == home / ".cache" / "nnlab" / "mnist"


def test_file_url_mirror(home, payload, tmp_path, monkeypatch):
    """A folder on disk (a USB stick, a network share) serves as a mirror through a file:// URL."""
    (tmp_path / "stick" / "mnist").mkdir(parents=True)
    for name, data in payload.items():
        (tmp_path / "stick" / "mnist" / name).write_bytes(data)
    monkeypatch.setenv("NNLAB_OFFLINE", "1")
    folder = _download(mirror=(tmp_path / "stick").as_uri())
    assert {n: (folder / n).read_bytes() for n in NAMES} == payload
