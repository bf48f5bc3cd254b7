# An app that fails at import (a module the board does not have): rolled back.
import no_such_module


def handle(message):
    """Never reached."""
    return no_such_module.answer(message)
