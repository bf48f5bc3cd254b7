# Over-the-air app updates, the job: AWS IoT Jobs for the work, MQTT-based
# file delivery (streams, JSON) for the files, on the device's one MQTT session.
# smslink imports this module only while there is update work, and run()
# drops it from sys.modules, so its RAM is freed once the call returns.
#
# Files are written beside the app (NAME.new), hashed while written, then
# switched under a journal (ota.json, replaced atomically by rename) that the
# next boot reads: a power cut at any moment leaves the old app or the new one.
# What follows the switch (probation, rollback, the verdict) is in smstrial,
# so it takes no RAM during a download.
import json
import os
import sys
from binascii import a2b_base64, hexlify
from hashlib import sha256

from smslink import JOURNAL

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


BLOCK = const(1024)  # a block's base64 JSON message stays far below axTLS's ~5,000-byte record
_ANSWER_MS = const(10000)  # how long AWS IoT gets to answer one request
_TRIES = const(3)
_SPARE = const(4096)  # flash left free after writing the new files
# The firmware's own modules: an update replaces app modules, never these.
_OWN = ("boot", "main", "smsboot", "smsconn", "smscore", "smslink", "smsota", "smstrial")
_wait = [None, (), None]  # while a request waits: the device, answer topics, the answer


class Reject(Exception):
    """The job cannot be done; args[0] is the reason reported to AWS IoT."""


class NoAnswer(Exception):
    """AWS IoT did not answer a request in time (the session itself still works)."""


def exists(path):
    """Whether a file is there."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def discard(path):
    """Remove a file if it is there."""
    if exists(path):
        os.remove(path)


def read_journal(root):
    """The update journal as a dict, or None when no update is under way."""
    try:
        with open(root + JOURNAL) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def write_journal(root, journal, step):
    """Record the update's step; a power cut leaves the old journal or the new one."""
    # A new copy renamed over the old one: a reader sees one or the other.
    journal["step"] = step
    with open(root + "ota.tmp", "w") as f:
        f.write(json.dumps(journal))
    os.rename(root + "ota.tmp", root + JOURNAL)


def switch(root, journal):
    """Put the journal's new files in place (NAME.new -> NAME, NAME -> NAME.old).

    Every step can be repeated, so a boot after a power cut finishes the job.
    """
    for name in journal["files"]:
        path = root + name
        if exists(path + ".new"):
            if exists(path):
                os.rename(path, path + ".old")
            os.rename(path + ".new", path)
    for name in journal.get("retire", []):  # the other flavour (.py/.mpy) would shadow or linger
        if exists(root + name):
            os.rename(root + name, root + name + ".old")
    write_journal(root, journal, "trial")


def _catch(topic, raw):
    # umqtt's callback while a request waits; SMS and the rest go to the device.
    if topic in _wait[1]:
        _wait[2] = (topic, raw)
    else:
        _wait[0]._on_msg(topic, raw)


def _ask(device, request, payload, answers, token, index=-1):
    """Publish request; return (accepted, answer, block data). NoAnswer if none came.

    answers: the accepted and rejected topics, relative to the thing.
    Answers carry our token as clientToken (jobs) or c (streams). For a stream
    block (index >= 0), the base64 text comes back as a memoryview into the
    message, not decoded by json: one copy less of the biggest thing in RAM.
    """
    prefix = "$aws/things/" + device.config["thing"] + "/"
    topics = ((prefix + answers[0]).encode(), (prefix + answers[1]).encode())
    client = device.client
    for topic in topics:
        if topic not in _wait[1]:  # umqtt has no unsubscribe: subscribe each once
            client.subscribe(topic, 0)
    _wait[0] = device
    _wait[1] = topics
    clock = device.clock
    client.set_callback(_catch)
    try:
        for _ in range(_TRIES):
            client.publish((prefix + request).encode(), json.dumps(payload).encode())
            sent = clock.ticks_ms()
            while clock.ticks_diff(clock.ticks_ms(), sent) < _ANSWER_MS:
                device._feed()
                if client.check_msg() is None:
                    clock.sleep_ms(20)
                found = _wait[2]
                if found is not None:
                    _wait[2] = None
                    accepted = found[0] == topics[0]
                    raw = found[1]
                    data = None
                    key = raw.find(b'"p"') if index >= 0 and accepted else -1
                    if key >= 0:  # a block: parse all but its base64 text, which stays put
                        start = raw.find(b'"', key + 3) + 1
                        end = raw.find(b'"', start)
                        data = memoryview(raw)[start:end]
                        raw = raw[:start] + raw[end:]
                    try:
                        answer = json.loads(raw)
                    except ValueError:
                        continue  # not an answer AWS IoT would send: keep waiting
                    if token in (answer.get("clientToken"), answer.get("c")) and (
                        index < 0 or answer.get("i", index) == index
                    ):
                        return accepted, answer, data
    finally:
        client.set_callback(device._on_msg)
    raise NoAnswer(request)


def report(device, job_id, status, reason=None, step=None):
    """Update a job execution's status; AWS IoT's refusal is logged, not retried."""
    details = {}
    if reason:
        details["reason"] = reason
    if step:
        details["step"] = step
    token = "%08x" % device.rand()
    request = "jobs/" + job_id + "/update"
    payload = {"status": status, "statusDetails": details, "clientToken": token}
    accepted, answer, _ = _ask(device, request, payload, (request + "/accepted",
                               request + "/rejected"), token)  # fmt: skip
    if not accepted:
        device.log("ota: status refused: " + str(answer.get("code")))


def plan(execution, thing, free):
    """Check a job execution; return (stream id, files) or raise Reject with the reason.

    free: bytes the board can store (None: unknown).
    """
    if execution.get("thingName") != thing:
        raise Reject("foreign thing")
    document = execution.get("jobDocument")
    if not isinstance(document, dict) or document.get("operation") != "app-update":
        raise Reject("unknown operation")
    stream_id = document.get("streamId")
    files = document.get("files")
    if not isinstance(stream_id, str) or not stream_id or "/" in stream_id:
        raise Reject("bad streamId")
    if not isinstance(files, list) or not files or len(files) > 8:
        raise Reject("bad files")
    names = []
    total = 0
    for entry in files:
        if not isinstance(entry, dict):
            raise Reject("bad files")
        name = entry.get("name")
        if not isinstance(name, str) or name in names:
            raise Reject("bad file name")
        # Compiled (.mpy) or source (.py: compiled at import, at a RAM cost).
        stem = name[:-4] if name[-4:] == ".mpy" else name[:-3] if name[-3:] == ".py" else ""
        if not stem or stem in _OWN or "0" <= stem[0] <= "9":
            raise Reject("bad file name")
        for char in stem:  # plain module names only: no "/", no ".."
            if not ("a" <= char <= "z" or "0" <= char <= "9" or char == "_"):
                raise Reject("bad file name")
        names.append(name)
        size = entry.get("size")
        if not isinstance(entry.get("fileId"), int) or not isinstance(size, int) or size <= 0:
            raise Reject("bad files")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise Reject("bad sha256")
        total += size
    if free is not None and total + _SPARE > free:
        raise Reject("too big")
    return stream_id, files


def _download(device, stream_id, entry, token):
    # Block after block into NAME.new, hashing as it goes; Reject on a mismatch.
    size = entry["size"]
    hasher = sha256()
    received = 0
    base = "streams/" + stream_id
    answers = (base + "/data/json", base + "/rejected/json")
    with open(device.root + entry["name"] + ".new", "wb") as f:
        while received < size:
            index = received // BLOCK
            request = {"c": token, "f": entry["fileId"], "l": BLOCK, "o": index, "n": 1}
            got, answer, data = _ask(device, base + "/get/json", request, answers, token, index)
            if not got and answer.get("o") != "OffsetOutOfBounds":  # past the end: wrong size
                raise Reject("stream " + str(answer.get("o")))
            block = b"" if data is None else a2b_base64(data)
            received += len(block)
            if not block or received > size or (len(block) < BLOCK and received < size):
                raise Reject("wrong size")
            hasher.update(block)
            f.write(block)
    if hexlify(hasher.digest()).decode() != entry["sha256"]:
        raise Reject("bad sha256")


def _other(name):
    # The module's other flavour: MicroPython imports NAME.py before NAME.mpy.
    return name[:-4] + ".py" if name[-4:] == ".mpy" else name[:-3] + ".mpy"


def _free(root):
    try:
        info = os.statvfs(root or "/")
        return info[1] * info[4]  # fragment size * blocks free to us
    except (AttributeError, OSError):
        return None


def _take(device, execution, token):
    # Download, verify and switch; Reject leaves the app untouched.
    root = device.root
    stream_id, files = plan(execution, device.config["thing"], _free(root))
    names = [entry["name"] for entry in files]
    retire = [n for n in map(_other, names) if n not in names and exists(root + n)]
    for name in names + retire:  # leftovers of an interrupted attempt
        discard(root + name + ".new")
        discard(root + name + ".old")
    try:
        for entry in files:
            _download(device, stream_id, entry, token)
    except Reject:
        for name in names:
            discard(root + name + ".new")
        raise
    fresh = [name for name in names if not exists(root + name)]
    journal = {"job": execution["jobId"], "files": names, "fresh": fresh, "retire": retire}
    write_journal(root, journal, "switch")  # from here on, the new app is what boots
    switch(root, journal)
    try:
        report(device, journal["job"], "IN_PROGRESS", step="restarting")
    finally:  # the switch is done: whatever the report did, boot the new app
        device.log("ota: new app written, restarting")
        if device.reset is not None:
            device.reset()


def _work(device, raw):
    journal = read_journal(device.root)
    if journal is not None:  # an update is past its switch: smstrial's business
        __import__("smstrial").run(device, journal)
        return
    if raw:  # notify-next: an "execution" means a job is queued
        try:
            if not isinstance(json.loads(raw).get("execution"), dict):
                return
        except (ValueError, AttributeError):
            return
    token = "%08x" % device.rand()
    request = {"clientToken": token, "statusDetails": {"step": "download"}}
    answers = ("jobs/start-next/accepted", "jobs/start-next/rejected")
    accepted, answer, _ = _ask(device, "jobs/start-next", request, answers, token)
    execution = answer.get("execution") if accepted else None
    if not isinstance(execution, dict):
        return  # no job for us
    job_id = execution.get("jobId")
    if not isinstance(job_id, str) or not job_id or "/" in job_id or "+" in job_id or "#" in job_id:
        device.log("ota: bad jobId")
        return
    device.log("ota: job started")
    try:
        _take(device, execution, token)
    except Reject as error:
        device.log("ota: job rejected: " + error.args[0])
        report(device, job_id, "REJECTED", error.args[0])


def run(device):
    """Do the device's pending update work (smslink calls this from its loop).

    Asks AWS IoT Jobs for the next job and carries it out, or hands a switched
    update to smstrial. Network errors escape (the loop reconnects and the work
    is retried); job errors are reported.
    """
    raw, device.job = device.job, None
    try:
        _work(device, raw)
    except NoAnswer as error:  # the job stays in progress; a later notice or boot retries
        device.log("ota: no answer to " + error.args[0])
    except OSError:
        device.job = b""  # network trouble: ask again once the loop has reconnected
        raise
    finally:
        sys.modules.pop(__name__, None)  # freed once the call returns
