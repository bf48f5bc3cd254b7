# Over-the-air app updates: AWS IoT Jobs for the work, MQTT-based file
# delivery (streams, JSON) for the files, on the device's one MQTT session.
# smslink imports this module only while there is update work, smsboot only
# when the update journal exists; both entry points (run, boot) drop it from
# sys.modules, so its RAM is freed as soon as the call returns.
#
# Files are written beside the app (NAME.new), hashed while written, then
# switched under a journal (ota.json, replaced atomically by rename) that the
# next boot reads: a power cut at any moment leaves the old app or the new one.
# The new app then runs on probation: failing to import, or raising on its
# first message, restores the old app and restarts.
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
PROBATION_MS = const(600000)  # no message this long after the switch: the new app passes
_SPARE = const(4096)  # flash left free after writing the new files
# The firmware's own modules: an update replaces app modules, never these.
_OWN = ("boot", "main", "smsboot", "smscore", "smslink", "smsota")
_wait = [None, (), None]  # while a request waits: the device, answer topics, the answer


class Reject(Exception):
    """The job cannot be done; args[0] is the reason reported to AWS IoT."""


class NoAnswer(Exception):
    """AWS IoT did not answer a request in time (the session itself still works)."""


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    if _exists(path):
        os.remove(path)


def read_journal(root):
    """The update journal as a dict, or None when no update is under way."""
    try:
        with open(root + JOURNAL) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _write(root, journal, step):
    # A new copy renamed over the old one: a reader sees one or the other.
    journal["step"] = step
    with open(root + "ota.tmp", "w") as f:
        f.write(json.dumps(journal))
    os.rename(root + "ota.tmp", root + JOURNAL)


def _switch(root, journal):
    # Roll forward: NAME.new becomes NAME, the old NAME is kept as NAME.old.
    # Every step can be repeated after a power cut.
    for name in journal["files"]:
        path = root + name
        if _exists(path + ".new"):
            if _exists(path):
                os.rename(path, path + ".old")
            os.rename(path + ".new", path)
    _write(root, journal, "trial")


def _restore(root, journal):
    # Roll back; every step can be repeated after a power cut.
    for name in journal["files"]:
        path = root + name
        if name in journal["fresh"]:
            _remove(path)
        elif _exists(path + ".old"):
            os.rename(path + ".old", path)
    _write(root, journal, "failed")


def _roll_back(root, journal, reason, reset):
    journal["reason"] = reason
    _write(root, journal, "rollback")
    _restore(root, journal)
    if reset is not None:
        reset()  # the board never returns from this


def boot(root, reset, log):
    """Finish what a restart interrupted, import the app; return its handle.

    smsboot calls this instead of importing the app when the journal exists.
    """
    sys.modules.pop(__name__, None)
    journal = read_journal(root)
    if journal is not None:
        step = journal["step"]
        if step == "switch":
            _switch(root, journal)
        elif step == "rollback":
            _restore(root, journal)
        if journal["step"] == "trial":
            try:
                import app

                return app.handle
            except Exception as error:  # SyntaxError, ImportError, anything at import
                sys.modules.pop("app", None)
                log("ota: new app fails to import, rolling back")
                _roll_back(root, journal, "import " + type(error).__name__, reset)
    import app

    return app.handle


class _Trial:
    """The new app's handle until its first message settles the trial."""

    def __init__(self, device, journal, handle):
        self.device = device
        self.journal = journal
        self.handle = handle

    def __call__(self, message):
        device = self.device
        try:
            reply = self.handle(message)
        except Exception as error:
            device.log("ota: new app fails on its first message, rolling back")
            # Restarting inside umqtt's callback leaves the message unacknowledged:
            # AWS IoT redelivers it, and the restored app answers it.
            _roll_back(device.root, self.journal, "app " + type(error).__name__, device.reset)
            raise
        _pass(device, self.journal, self.handle)
        return reply


def _pass(device, journal, handle):
    device.handle = handle
    device.job_at = None
    _write(device.root, journal, "passed")
    device.job = b""  # reported from the loop, not from inside umqtt's callback


def _catch(topic, raw):
    # umqtt's callback while a request waits; SMS and the rest go to the device.
    if topic in _wait[1]:
        _wait[2] = (topic, raw)
    else:
        _wait[0]._on_msg(topic, raw)


def _ask(device, request, payload, answers, token, index=-1):
    """Publish request; return (accepted, answer dict, raw answer). NoAnswer if none came.

    answers: the accepted and rejected topics, relative to the thing.
    Answers carry our token as clientToken (jobs) or c (streams).
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
                    answer = json.loads(found[1])
                    if token in (answer.get("clientToken"), answer.get("c")) and (
                        index < 0 or answer.get("i", index) == index
                    ):
                        return found[0] == topics[0], answer, found[1]
    finally:
        client.set_callback(device._on_msg)
    raise NoAnswer(request)


def _report(device, job_id, status, reason=None, step=None):
    # Update the job execution; AWS IoT's answer is logged, not retried.
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
        if not isinstance(name, str) or not name.endswith(".mpy") or name in names:
            raise Reject("bad file name")
        stem = name[:-4]
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
            got, answer, raw = _ask(device, base + "/get/json", request, answers, token, index)
            if not got and answer.get("o") != "BlockOutOfBounds":  # past the end: wrong size
                raise Reject("stream " + str(answer.get("o")))
            block = b""
            if got and isinstance(answer.get("p"), str):
                # Decode the base64 in place in the message: no copy of it
                start = raw.find(b'"', raw.find(b'"p"') + 3) + 1
                block = a2b_base64(memoryview(raw)[start : raw.find(b'"', start)])
            received += len(block)
            if not block or received > size or (len(block) < BLOCK and received < size):
                raise Reject("wrong size")
            hasher.update(block)
            f.write(block)
    if hexlify(hasher.digest()).decode() != entry["sha256"]:
        raise Reject("bad sha256")


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
    for name in names:  # leftovers of an interrupted attempt
        _remove(root + name + ".new")
        _remove(root + name + ".old")
    try:
        for entry in files:
            _download(device, stream_id, entry, token)
    except Reject:
        for name in names:
            _remove(root + name + ".new")
        raise
    fresh = [name for name in names if not _exists(root + name)]
    journal = {"job": execution["jobId"], "files": names, "fresh": fresh}
    _write(root, journal, "switch")  # from here on, the new app is what boots
    _switch(root, journal)
    try:
        _report(device, journal["job"], "IN_PROGRESS", step="restarting")
    finally:  # the switch is done: whatever the report did, boot the new app
        device.log("ota: new app written, restarting")
        if device.reset is not None:
            device.reset()


def _judge(device, journal):
    # The new app is on probation: watch its first message, or pass it when
    # the probation window ends without one.
    clock = device.clock
    handle = device.handle
    if device.job_at is None:
        device.job_at = clock.ticks_add(clock.ticks_ms(), PROBATION_MS)
        if not isinstance(handle, _Trial):
            device.handle = _Trial(device, journal, handle)
    elif clock.ticks_diff(clock.ticks_ms(), device.job_at) >= 0:
        _pass(device, journal, handle.handle if isinstance(handle, _Trial) else handle)


def _work(device, raw):
    root = device.root
    journal = read_journal(root)
    if journal is not None:
        step = journal["step"]
        if step == "trial":
            _judge(device, journal)
        elif step == "passed" or step == "failed":
            # Report the verdict a restart (or the trial) left, then forget it.
            passed = step == "passed"
            status = "SUCCEEDED" if passed else "FAILED"
            _report(device, journal["job"], status, journal.get("reason"))
            for name in journal["files"]:
                if passed:
                    _remove(root + name + ".old")
            _remove(root + JOURNAL)
            device.log("ota: job " + status)
        return
    if raw:  # notify-next: an "execution" means a job is queued
        try:
            if not isinstance(json.loads(raw).get("execution"), dict):
                return
        except (ValueError, AttributeError):
            return
    token = "%08x" % device.rand()
    accepted, answer, _ = _ask(device, "jobs/start-next", {"clientToken": token,
                            "statusDetails": {"step": "download"}},
                            ("jobs/start-next/accepted", "jobs/start-next/rejected"), token)  # fmt: skip
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
        _report(device, job_id, "REJECTED", error.args[0])


def run(device):
    """Do the device's pending update work (smslink calls this from its loop).

    Reports a verdict a restart left, watches a new app on probation, or asks
    AWS IoT Jobs for the next job and carries it out. Network errors escape
    (the loop reconnects and the work is retried); job errors are reported.
    """
    sys.modules.pop(__name__, None)
    raw, device.job = device.job, None
    try:
        _work(device, raw)
    except NoAnswer as error:  # the job stays in progress; a later notice or boot retries
        device.log("ota: no answer to " + error.args[0])
    except OSError:
        device.job = b""  # network trouble: ask again once the loop has reconnected
        raise
