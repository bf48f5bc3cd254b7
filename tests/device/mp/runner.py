# mypy: ignore-errors
# (MicroPython program: no typing module there, so it is not type-checked)
# Runs every case in cases.py under MicroPython and prints one JSON line each.
import json
import sys

import cases

for name in cases.names():
    try:
        getattr(cases, name)()
        print(json.dumps({"case": name, "ok": True}))
    except Exception as e:  # report and go on: one failing case must not hide the others
        import io

        buf = io.StringIO()
        sys.print_exception(e, buf)
        print(json.dumps({"case": name, "ok": False, "error": buf.getvalue()}))
print(json.dumps({"done": True}))
