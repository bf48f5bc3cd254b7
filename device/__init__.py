"""The device: MicroPython firmware (`device/board/`) and the host tool that flashes it."""
