"""A faithful stand-in for API Gateway's REST mapping templates and Lambda (non-proxy) integration.

API Gateway evaluates request and response templates with Apache Velocity and its own `$input`,
`$util` and `$context` objects. This module supplies those objects around a real Velocity
engine (PyPI `airspeed-ext`, module `airspeed`), with the behaviour that trips people up:

- values reach the template as Java strings and maps: `$s.split(',')` drops trailing empty
  strings, `$m.keySet()` iterates in Java `HashMap` order (not the order sent), a repeated
  query key becomes one comma-joined value;
- `$util.escapeJavaScript` escapes `'` as `\\'` (not valid JSON), `/` as `\\/` and every
  non-ASCII UTF-16 unit as `\\uXXXX`; `$util.urlEncode` is Java's `URLEncoder`;
- `$input.path('$')` on a body that is not JSON is the raw body string;
- a null passed to a `$util` function fails the request (Java would throw), so a template
  that could pass one is caught here rather than in production.

`render()` evaluates one template. `LambdaMethod` emulates one method of a REST API from its
synthesized CloudFormation (`AWS::ApiGateway::Method` and `AWS::ApiGateway::GatewayResponse`):
request template selection by content type, `PassthroughBehavior: NEVER`, integration
responses chosen by `SelectionPattern` against the Lambda's `errorMessage`, response
parameters and response templates. Tests use it to run the real template and the real
handler together; the offline demo serves it over HTTP.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import airspeed

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "JList",
    "JMap",
    "JString",
    "LambdaMethod",
    "TemplateError",
    "default_context",
    "invoke_in_process",
    "render",
]


class TemplateError(Exception):
    """The template failed where API Gateway would fail the request (HTTP 500)."""


# -- Java values ---------------------------------------------------------------------------


def _java_hash(text: str) -> int:
    """Java's `String.hashCode()`, over UTF-16 code units, as an unsigned 32-bit int."""
    value = 0
    units = text.encode("utf-16-be", "surrogatepass")
    for index in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[index : index + 2], "big")) & 0xFFFFFFFF
    return value


def _hashmap_order(keys: Sequence[str]) -> list[str]:
    """The iteration order of a `java.util.HashMap` holding `keys` (inserted in this order).

    API Gateway does not document the order of `$input.params().querystring.keySet()`; this
    models a HashMap, so code that relies on the order the client sent is caught by tests.
    """
    capacity = 16
    while len(keys) > capacity * 3 // 4:
        capacity *= 2

    def bucket(key: str) -> int:
        hashed = _java_hash(key)
        return (hashed ^ (hashed >> 16)) & (capacity - 1)

    return sorted(keys, key=bucket)  # sorted() is stable: insertion order within a bucket


class JString(str):
    """A `java.lang.String`: the methods templates call on values, with Java semantics."""

    def length(self) -> int:
        """UTF-16 code units, like Java."""
        return len(self.encode("utf-16-le", "surrogatepass")) // 2

    def isEmpty(self) -> bool:
        return not self

    def equals(self, other: object) -> bool:
        return isinstance(other, str) and str(self) == str(other)

    def toLowerCase(self) -> JString:
        return JString(self.lower())

    def toUpperCase(self) -> JString:
        return JString(self.upper())

    def trim(self) -> JString:
        return JString(self.strip("".join(chr(c) for c in range(33))))

    def contains(self, part: str) -> bool:
        return part in self

    def startsWith(self, prefix: str) -> bool:
        return self.startswith(prefix)

    def endsWith(self, suffix: str) -> bool:
        return self.endswith(suffix)

    def indexOf(self, part: str) -> int:
        return self.find(part)

    def substring(self, start: int, end: int | None = None) -> JString:
        if start < 0 or start > len(self) or (end is not None and not start <= end <= len(self)):
            raise TemplateError("StringIndexOutOfBoundsException in substring()")
        return JString(self[start:end])

    def replace(self, old: str, new: str, count: Any = -1) -> JString:
        del count  # Java's replace(CharSequence, CharSequence) replaces every occurrence
        return JString(str.replace(self, old, new))

    def replaceAll(self, pattern: str, replacement: str) -> JString:
        java_replacement = re.sub(r"\$(\d)", r"\\\1", replacement)
        return JString(re.sub(pattern, java_replacement, self))

    def matches(self, pattern: str) -> bool:
        return re.fullmatch(pattern, self, re.DOTALL) is not None

    def split(self, pattern: str, limit: int = 0) -> JList:  # type: ignore[override]
        """Java's `String.split(regex, limit)`: with limit 0, trailing empty strings go."""
        if not self:
            return JList([JString("")])
        parts = re.split(pattern, self, maxsplit=limit - 1 if limit > 0 else 0)
        # Java 8+: a zero-width match at the start never yields a leading empty string.
        leading = re.match(pattern, self)
        if parts and parts[0] == "" and leading is not None and leading.end() == 0:
            parts.pop(0)
        if limit == 0:
            while parts and parts[-1] == "":
                parts.pop()
        return JList(JString(part) for part in parts)

    def toString(self) -> JString:
        return self


class JList(list[Any]):
    """A `java.util.List`."""

    def size(self) -> int:
        return len(self)

    def get(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise TemplateError("IndexOutOfBoundsException in get()")
        return self[index]

    def isEmpty(self) -> bool:
        return not self

    def contains(self, value: object) -> bool:
        return value in self


class JMap(dict[str, Any]):
    """A `java.util.Map` whose `keySet()` iterates in Java `HashMap` order.

    Velocity resolves `$map.name` to `map.get("name")`; airspeed looks keys up before
    methods, so a key named like a Map method would hide it. Real Velocity calls the method
    when the reference has parentheses, which is what templates do: methods win here.
    """

    _METHODS = frozenset(
        {"get", "keySet", "containsKey", "size", "isEmpty", "values", "entrySet", "toString"}
    )

    def __getitem__(self, key: str) -> Any:
        if key in self._METHODS:
            raise KeyError(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, default)

    def keySet(self) -> JList:
        return JList(JString(key) for key in _hashmap_order(list(self.keys())))

    def containsKey(self, key: str) -> bool:
        return key in self

    def size(self) -> int:
        return len(self)

    def isEmpty(self) -> bool:
        return not self

    def toString(self) -> JString:
        return JString("{" + ", ".join(f"{k}={self.get(k)}" for k in self.keySet()) + "}")


def java(value: Any) -> Any:
    """Converts Python data (from JSON or a caller) into the Java-like values templates see."""
    if isinstance(value, str):
        return JString(value)
    if isinstance(value, Mapping):
        return JMap({str(k): java(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return JList(java(v) for v in value)
    return value


def _multimap(pairs: Iterable[tuple[str, str]], *, case_insensitive: bool = False) -> JMap:
    """Repeated names become one comma-joined value, as API Gateway does for templates."""
    merged: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in pairs:
        key = names.setdefault(name.lower(), name) if case_insensitive else name
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return JMap({name: JString(value) for name, value in merged.items()})


# -- $util and $input ----------------------------------------------------------------------


def _require(value: Any, function: str) -> str:
    if value is None:
        raise TemplateError(f"$util.{function}(null): API Gateway fails the request")
    return str(value)


class Util:
    """API Gateway's `$util`."""

    def escapeJavaScript(self, value: Any) -> JString:
        """commons-lang 2 `StringEscapeUtils.escapeJavaScript`: `'` -> `\\'`, `/` -> `\\/`."""
        text = _require(value, "escapeJavaScript")
        out: list[str] = []
        simple = {"'": "\\'", '"': '\\"', "\\": "\\\\", "/": "\\/"}
        controls = {"\b": "\\b", "\n": "\\n", "\t": "\\t", "\f": "\\f", "\r": "\\r"}
        units = text.encode("utf-16-be", "surrogatepass")
        for index in range(0, len(units), 2):
            code = int.from_bytes(units[index : index + 2], "big")
            char = chr(code) if code < 0xD800 or code > 0xDFFF else ""
            if code > 0x7F:
                out.append(f"\\u{code:04X}")
            elif char in simple:
                out.append(simple[char])
            elif char in controls:
                out.append(controls[char])
            elif code < 0x20:
                out.append(f"\\u{code:04X}")
            else:
                out.append(char)
        return JString("".join(out))

    def base64Encode(self, value: Any) -> JString:
        data = _require(value, "base64Encode").encode("utf-8", "surrogatepass")
        return JString(base64.b64encode(data).decode("ascii"))

    def base64Decode(self, value: Any) -> JString:
        try:
            data = base64.b64decode(_require(value, "base64Decode"), validate=True)
        except ValueError as error:
            raise TemplateError(f"$util.base64Decode: {error}") from error
        return JString(data.decode("utf-8", "replace"))

    def urlEncode(self, value: Any) -> JString:
        """Java's `URLEncoder.encode(s, "UTF-8")`: space -> `+`, `*` kept, `~` encoded."""
        text = _require(value, "urlEncode")
        return JString(urllib.parse.quote_plus(text, safe="*").replace("~", "%7E"))

    def urlDecode(self, value: Any) -> JString:
        """Java's `URLDecoder.decode(s, "UTF-8")`, which rejects a malformed `%` escape."""
        text = _require(value, "urlDecode")
        if re.search(r"%(?![0-9A-Fa-f]{2})", text):
            raise TemplateError("$util.urlDecode: malformed % escape")
        return JString(urllib.parse.unquote_plus(text, errors="replace"))

    def parseJson(self, value: Any) -> Any:
        try:
            return java(json.loads(_require(value, "parseJson")))
        except json.JSONDecodeError as error:
            raise TemplateError(f"$util.parseJson: {error}") from error


_PATH_TOKEN = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['([^']*)'\]")


def _json_path(document: Any, path: str) -> Any:
    """The JSONPath subset templates use: `$`, `$.a.b`, `$.a[0]`, `$['a']`."""
    if not path.startswith("$"):
        raise TemplateError(f"JSONPath must start with $: {path!r}")
    position, current = 1, document
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if match is None:
            raise TemplateError(f"unsupported JSONPath {path!r}")
        name, index, quoted = match.groups()
        key: str | int = int(index) if index is not None else (name or quoted)
        try:
            current = current[key]
        except (KeyError, IndexError, TypeError):
            return None
        position = match.end()
    return current


class Input:
    """API Gateway's `$input` for one request."""

    def __init__(self, body: str, params: JMap) -> None:
        self.body = JString(body)
        self._params = params

    def _document(self) -> tuple[bool, Any]:
        try:
            return True, json.loads(self.body)
        except json.JSONDecodeError:
            return False, None

    def path(self, expression: str) -> Any:
        """The value at a JSONPath; on a body that is not JSON, `$` is the raw body."""
        is_json, document = self._document()
        if not is_json:
            return self.body if expression == "$" else None
        return java(_json_path(document, expression))

    def json(self, expression: str) -> JString:
        """The JSON text of the value at a JSONPath."""
        is_json, document = self._document()
        if not is_json:
            raise TemplateError("$input.json on a body that is not JSON")
        return JString(json.dumps(_json_path(document, expression), ensure_ascii=False))

    def params(self, name: str | None = None) -> Any:
        """All parameters (`path`, `querystring`, `header` maps), or one by name."""
        if name is None:
            return self._params
        for kind in ("path", "querystring", "header"):
            found = self._params[kind].get(name)
            if found is not None:
                return found
        return None


def default_context(
    *,
    domain_name: str = "abc123defg.execute-api.eu-west-1.amazonaws.com",
    stage: str = "v1",
    resource_path: str = "/message",
    path: str | None = None,
    http_method: str = "POST",
    request_id: str = "c0ffee00-0000-4000-8000-000000000000",
    **extra: Any,
) -> dict[str, Any]:
    """A `$context` like API Gateway's. On the execute-api domain `path` is
    `/{stage}{resource_path}`; behind a custom domain it is `/{base path}{resource_path}`
    (no stage), so pass `path` explicitly for that case."""
    return {
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "stage": stage,
        "resourcePath": resource_path,
        "path": path if path is not None else f"/{stage}{resource_path}",
        "httpMethod": http_method,
        "requestId": request_id,
        "extendedRequestId": request_id,
        "identity": {"sourceIp": "192.0.2.1", "userAgent": "TwilioProxy/1.1"},
        **extra,
    }


def _pairs(values: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if values is None:
        return []
    if isinstance(values, Mapping):
        return [(str(k), str(v)) for k, v in values.items()]
    return [(str(k), str(v)) for k, v in values]


_COMPILED: dict[str, airspeed.Template] = {}


def render(
    template: str,
    body: bytes,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    query: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    path_params: Mapping[str, str] | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> str:
    """Evaluates a mapping template as API Gateway would for this request.

    `body` is the raw request body (decoded as UTF-8 like API Gateway, invalid bytes
    replaced); `headers` and `query` may repeat names; `query` values are already
    URL-decoded, as API Gateway hands them to templates. Raises `TemplateError` where API
    Gateway would answer 500.
    """
    compiled = _COMPILED.get(template)
    if compiled is None:
        compiled = _COMPILED.setdefault(template, airspeed.Template(template))
    params = JMap(
        {
            "path": java(dict(path_params or {})),
            "querystring": _multimap(_pairs(query)),
            "header": _multimap(_pairs(headers), case_insensitive=True),
        }
    )
    namespace = {
        "input": Input(body.decode("utf-8", "replace"), params),
        "util": Util(),
        "context": java(dict(context if context is not None else default_context())),
        "stageVariables": java(dict(stage_variables or {})),
    }
    try:
        return str(compiled.merge(namespace))
    except TemplateError:
        raise
    except airspeed.TemplateError as error:
        cause = error.__cause__ or error.__context__
        if isinstance(cause, TemplateError):
            raise cause from error
        raise TemplateError(str(error)) from error


# -- One REST method with a Lambda (non-proxy) integration ---------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request to the API, as the client sent it."""

    body: bytes
    headers: Sequence[tuple[str, str]] = ()
    query: Sequence[tuple[str, str]] = ()
    context: Mapping[str, Any] = field(default_factory=default_context)

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class HttpResponse:
    """What API Gateway answers."""

    status: int
    headers: Mapping[str, str]
    body: str


LambdaResult = tuple[Any, str | None]
"""A Lambda invocation's outcome: (payload, errorMessage or None)."""


def invoke_in_process(
    handler: Callable[[dict[str, Any], Any], Any], context: Any
) -> Callable[[dict[str, Any]], LambdaResult]:
    """Calls a Python handler like the Lambda runtime: an exception becomes `errorMessage`."""

    def invoke(event: dict[str, Any]) -> LambdaResult:
        try:
            return handler(event, context), None
        except Exception as error:  # the runtime reports any exception as a function error
            payload = {"errorMessage": str(error), "errorType": type(error).__name__}
            return payload, str(error)

    return invoke


def _media_type(content_type: str | None) -> str:
    # API Gateway picks a template by media type: parameters (charset=...) are ignored.
    return (content_type or "application/json").split(";", 1)[0].strip().lower()


class LambdaMethod:
    """One API Gateway method with a non-proxy Lambda integration, from synthesized CFN."""

    def __init__(
        self,
        method_properties: Mapping[str, Any],
        gateway_responses: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        integration = method_properties["Integration"]
        if integration.get("Type") != "AWS":
            raise ValueError("only non-proxy Lambda integrations (Type AWS) are emulated")
        self.request_templates: dict[str, str] = {
            k.lower(): v for k, v in integration.get("RequestTemplates", {}).items()
        }
        self.passthrough = integration.get("PassthroughBehavior", "WHEN_NO_MATCH")
        self.responses: list[Mapping[str, Any]] = list(integration.get("IntegrationResponses", []))
        self.gateway_responses = dict(gateway_responses or {})

    @classmethod
    def from_template(
        cls, template: Mapping[str, Any], path_part: str, http_method: str = "POST"
    ) -> LambdaMethod:
        """The method `http_method` of the resource `/{path_part}` in a synthesized template."""
        resources = template["Resources"]
        resource_ids = {
            logical_id
            for logical_id, r in resources.items()
            if r["Type"] == "AWS::ApiGateway::Resource" and r["Properties"]["PathPart"] == path_part
        }
        methods = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::ApiGateway::Method"
            and r["Properties"]["HttpMethod"] == http_method
            and r["Properties"].get("ResourceId", {}).get("Ref") in resource_ids
        ]
        if len(methods) != 1:
            raise ValueError(f"expected one {http_method} /{path_part}, found {len(methods)}")
        gateway = {
            r["Properties"]["ResponseType"]: r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::ApiGateway::GatewayResponse"
        }
        return cls(methods[0], gateway)

    def _gateway_response(
        self, response_type: str, default_status: int, message: str
    ) -> HttpResponse:
        configured = self.gateway_responses.get(response_type, {})
        status = int(configured.get("StatusCode", default_status))
        headers = {
            name.removeprefix("gatewayresponse.header."): value.strip("'")
            for name, value in configured.get("ResponseParameters", {}).items()
        }
        templates = configured.get("ResponseTemplates", {})
        body = templates.get("application/json", json.dumps({"message": message}))
        return HttpResponse(status, headers or {"Content-Type": "application/json"}, body)

    def handle(
        self, request: HttpRequest, invoke: Callable[[dict[str, Any]], LambdaResult]
    ) -> HttpResponse:
        """Maps the request, invokes the function and maps its answer, like API Gateway."""
        media_type = _media_type(request.header("Content-Type"))
        template = self.request_templates.get(media_type)
        if template is None:
            if self.passthrough != "WHEN_NO_MATCH":
                return self._gateway_response(
                    "UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported Media Type"
                )
            event_text = request.body.decode("utf-8", "replace")
        else:
            try:
                event_text = render(
                    template, request.body, request.headers, request.query, request.context
                )
            except TemplateError:
                return self._gateway_response("DEFAULT_5XX", 500, "Internal server error")
        try:
            event = json.loads(event_text)
        except json.JSONDecodeError:
            # Lambda rejects a payload that is not JSON; API Gateway answers 500.
            return self._gateway_response("DEFAULT_5XX", 500, "Internal server error")
        payload, error_message = invoke(event)
        chosen = self._select_response(error_message)
        if chosen is None:
            return self._gateway_response("DEFAULT_5XX", 502, "Internal server error")
        return self._integration_response(chosen, payload, request)

    def _select_response(self, error_message: str | None) -> Mapping[str, Any] | None:
        default = next((r for r in self.responses if not r.get("SelectionPattern")), None)
        if error_message is None:
            return default
        for response in self.responses:
            pattern = response.get("SelectionPattern")
            # Java's String.matches(): the whole errorMessage must match.
            if pattern and re.fullmatch(pattern, error_message):
                return response
        return default  # an unmatched error falls through to the default response

    def _integration_response(
        self, response: Mapping[str, Any], payload: Any, request: HttpRequest
    ) -> HttpResponse:
        headers = {
            name.removeprefix("method.response.header."): value.strip("'")
            for name, value in response.get("ResponseParameters", {}).items()
        }
        templates: Mapping[str, str] = response.get("ResponseTemplates", {})
        accept = _media_type(request.header("Accept")) if request.header("Accept") else None
        template = (
            templates.get(accept or "")
            or templates.get("application/json")
            or next(iter(templates.values()), None)
        )
        payload_text = json.dumps(payload, ensure_ascii=False)
        if template is None:
            body = payload_text
        else:
            try:
                body = render(template, payload_text.encode("utf-8"), context=request.context)
            except TemplateError:
                return self._gateway_response("DEFAULT_5XX", 500, "Internal server error")
        return HttpResponse(int(response["StatusCode"]), headers, body)
