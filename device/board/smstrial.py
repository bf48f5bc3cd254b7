# Over-the-air app updates, after the switch: the new app on probation, the
# rollback, the verdict reported to AWS IoT Jobs, and the boot-time repair of
# an update a restart interrupted. Loaded only then (by smsota or smsboot),
# never during a download; both entry points drop it from sys.modules.
import os
import sys

import smsota
from smslink import JOURNAL

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


PROBATION_MS = const(600000)  # no message this long after the switch: the new app passes


def _restore(root, journal):
    # Roll back; every step can be repeated after a power cut.
    for name in journal["files"] + journal.get("retire", []):
        path = root + name
        if name in journal["fresh"]:
            smsota.discard(path)
        elif smsota.exists(path + ".old"):
            os.rename(path + ".old", path)
    smsota.write_journal(root, journal, "failed")


def _roll_back(root, journal, reason, reset):
    journal["reason"] = reason
    smsota.write_journal(root, journal, "rollback")
    _restore(root, journal)
    if reset is not None:
        reset()  # the board never returns from this


def boot(root, reset, log):
    """Finish what a restart interrupted, import the app; return its handle.

    smsboot calls this instead of importing the app when the journal exists.
    """
    sys.modules.pop(__name__, None)
    sys.modules.pop("smsota", None)
    journal = smsota.read_journal(root)
    if journal is not None:
        step = journal["step"]
        if step == "switch":
            smsota.switch(root, journal)
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
    smsota.write_journal(device.root, journal, "passed")
    device.job = b""  # reported from the loop, not from inside umqtt's callback


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


def run(device, journal):
    """Carry on with a switched update (smsota calls this when the journal exists).

    Watches the new app on probation, or reports the verdict a restart or the
    trial left, then forgets the update.
    """
    sys.modules.pop(__name__, None)
    step = journal["step"]
    if step == "trial":
        _judge(device, journal)
    elif step == "passed" or step == "failed":
        passed = step == "passed"
        status = "SUCCEEDED" if passed else "FAILED"
        smsota.report(device, journal["job"], status, journal.get("reason"))
        root = device.root
        for name in journal["files"] + journal.get("retire", []):
            if passed:
                smsota.discard(root + name + ".old")
        smsota.discard(root + JOURNAL)
        device.log("ota: job " + status)
