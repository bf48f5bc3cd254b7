"""A stand-in for the board's side of an update (the real one is device/board's, run on
MicroPython by the firmware tests). It follows the protocol in README.md ("Update over the
air") over MQTT, so the `ota` tool and the local Jobs model are tested end to end without
it."""

from __future__ import annotations

import base64
import hashlib
import queue
import threading
from typing import Any

from tests.ota.conftest import Device

BLOCK = 1024


class BoardDouble:
    """Takes the next job, downloads and checks every file, reports `outcome`.

    `outcome`: "SUCCEEDED" (the new app ran), or "FAILED" (it raised on its first message
    and was rolled back). A file whose size or SHA-256 differs is always REJECTED.
    """

    def __init__(self, device: Device, outcome: str = "SUCCEEDED") -> None:
        self.device = device
        self.outcome = outcome
        self.installed: dict[str, bytes] = {}
        device.subscribe(
            "jobs/notify-next",
            "jobs/start-next/accepted",
            "jobs/+/update/accepted",
            "streams/+/data/json",
            "streams/+/rejected/json",
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                topic, message = self.device.next(timeout=0.1)
            except queue.Empty:  # poll the stop flag again
                continue
            if topic == "jobs/notify-next" and "execution" in message:
                self.device.publish("jobs/start-next", {"clientToken": "board"})
            elif topic == "jobs/start-next/accepted" and "execution" in message:
                self._apply(message["execution"])

    def _apply(self, execution: dict[str, Any]) -> None:
        job_id, document = execution["jobId"], execution["jobDocument"]
        files = {}
        for entry in document["files"]:
            data = self._download(document["streamId"], entry["fileId"], entry["size"])
            self._report(job_id, "IN_PROGRESS", {"received": f"{entry['name']} {len(data)}"})
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                self._report(job_id, "REJECTED", {"reason": f"{entry['name']}: bad hash"})
                return
            files[entry["name"]] = data
        if self.outcome == "SUCCEEDED":
            self.installed.update(files)
            self._report(job_id, "SUCCEEDED", {"app": "running"})
        else:
            self._report(job_id, "FAILED", {"reason": "app raised on its first message"})

    def _download(self, stream: str, file_id: int, size: int) -> bytes:
        data = b""
        for offset in range((size + BLOCK - 1) // BLOCK):
            self.device.publish(
                f"streams/{stream}/get/json",
                {"c": "board", "f": file_id, "l": BLOCK, "o": offset, "n": 1},
            )
            topic, message = self.device.next()
            if not topic.endswith("/data/json"):
                break
            data += base64.b64decode(message["p"])
        return data

    def _report(self, job_id: str, status: str, details: dict[str, str]) -> None:
        self.device.publish(f"jobs/{job_id}/update", {"status": status, "statusDetails": details})
        while self.device.next()[0] != f"jobs/{job_id}/update/accepted":
            pass

    def close(self) -> None:
        """Stops following jobs."""
        self._stop.set()
        self._thread.join(timeout=5)
