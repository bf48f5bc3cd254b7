# The firmware as a MicroPython package (micropython-lib style): freeze it into
# an image (FROZEN_MANIFEST=.../manifest.py) or install it with mip. The board
# also needs config.json and the device's DER files (see device/README.md).
# The version is smslink.FIRMWARE, read from the source so it lives in one place.
with open("smslink.py") as _source:  # the freezer and mip run this from this folder
    for _line in _source:
        if _line.startswith("FIRMWARE ="):
            _version = _line.split('"')[1]

metadata(version=_version, description="Text a device: SMS over AWS IoT on the ESP8266")
require("umqtt.simple")
module("main.py")
module("smsboot.py")
module("smslink.py")
module("smscore.py")
module("smsota.py")
module("smstext.py")
module("smstrial.py")
module("app.py")
