# ruff: noqa: F821, PTH123 (metadata, require, module: given by the manifest's executor)
# mypy: ignore-errors
# The firmware (device/board/) as a MicroPython package, micropython-lib style:
# freeze it into an image (make ... FROZEN_MANIFEST=<this file>) or install it
# with mip. It sits beside board/ so the flashing tool, which copies every
# board/*.py, does not ship it. The board also needs config.json and the
# device's DER files (see device/README.md).
# The version is smslink.FIRMWARE, read from the source so it lives in one place.
with open("board/smslink.py") as _source:  # the freezer and mip run this from this folder
    for _line in _source:
        if _line.startswith("FIRMWARE ="):
            _version = _line.split('"')[1]

metadata(version=_version, description="Text a device: SMS over AWS IoT on the ESP8266")
require("umqtt.simple")
module("main.py", base_path="board")
module("smsboot.py", base_path="board")
module("smslink.py", base_path="board")
module("smsconn.py", base_path="board")
module("smscore.py", base_path="board")
module("smsota.py", base_path="board")
module("smstrial.py", base_path="board")
module("smstext.py", base_path="board")
module("app.py", base_path="board")
