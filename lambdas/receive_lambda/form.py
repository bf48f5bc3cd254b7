"""Twilio's form body (`application/x-www-form-urlencoded`), parsed strictly."""

from __future__ import annotations

import re
import urllib.parse

from receive_lambda.errors import BadRequest

MAX_FIELDS = 200
"""More form fields than Twilio ever sends: beyond this the body is rejected unparsed."""
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class FormParams(dict[str, list[str]]):
    """A form body: every value of every name, in the order sent.

    `getall` is the interface twilio's `RequestValidator` uses for repeated names (it signs
    each name with each of its values), so no value escapes the signature check.
    """

    def getall(self, name: str) -> list[str]:
        """Every value sent for `name`."""
        return self[name]

    def one(self, name: str) -> str:
        """The one value of `name`; missing or repeated (ambiguous) is a bad request."""
        value = self.maybe(name)
        if value is None:
            raise BadRequest(f"missing parameter {name}")
        return value

    def maybe(self, name: str) -> str | None:
        """The one value of `name` or None if absent; repeated is a bad request."""
        values = self.get(name)
        if values is None:
            return None
        if len(values) != 1:
            raise BadRequest(f"parameter {name} is repeated")
        return values[0]


def parse_form(body: str) -> FormParams:
    """Parses an `application/x-www-form-urlencoded` body strictly (UTF-8, `+` is a space).

    Raises BadRequest for a field without `=`, an empty field, a malformed `%` escape,
    bytes that are not UTF-8 and more than `MAX_FIELDS` fields.
    """
    if _BAD_PERCENT.search(body):
        raise BadRequest("the form body has a malformed % escape")
    try:
        pairs = urllib.parse.parse_qsl(
            body,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError as error:  # UnicodeDecodeError is a ValueError
        raise BadRequest("the body is not a valid UTF-8 form") from error
    form = FormParams()
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form
