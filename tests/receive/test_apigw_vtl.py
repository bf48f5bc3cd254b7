"""The API Gateway VTL stand-in reproduces the behaviour that trips templates up."""

from __future__ import annotations

import base64
import json

import pytest

from loop.apigw_vtl import TemplateError, default_context, render


def test_input_path_dollar_on_a_form_body_is_the_raw_body() -> None:
    assert render("$input.path('$')", b"a=1&b=%2B") == "a=1&b=%2B"
    assert render("$input.path('$.a[1]')", b'{"a": [1, "x"]}') == "x"
    assert render("$input.json('$.a')", b'{"a": ["\xc3\xa9"]}'.decode().encode()) == '["é"]'


def test_escape_javascript_escapes_the_single_quote_and_non_ascii() -> None:
    out = render("$util.escapeJavaScript($input.body)", 'it\'s a/b "c" \\ é😀\n'.encode())
    assert out == 'it\\\'s a\\/b \\"c\\" \\\\ \\u00E9\\uD83D\\uDE00\\n'
    with pytest.raises(json.JSONDecodeError):
        json.loads(f'"{out}"')  # \' is not JSON: why the real template uses base64


def test_split_drops_trailing_empty_strings_like_java() -> None:
    context = {**default_context(), "s": "a,b,,", "e": ",", "z": ""}
    template = (
        "$context.s.split(',').size() $context.e.split(',').size() $context.z.split(',').size()"
    )
    assert render(template, b"", context=context) == "2 0 1"


def test_url_encode_and_decode_are_javas() -> None:
    assert render("$util.urlEncode('a b*~é')", b"") == "a+b*%7E%C3%A9"
    assert render("$util.urlDecode('a+b%2B')", b"") == "a b+"
    with pytest.raises(TemplateError):
        render("$util.urlDecode('%zz')", b"")


def test_base64_is_of_utf8_bytes_and_null_fails_the_request() -> None:
    assert (
        render("$util.base64Encode($input.body)", "😀".encode())
        == base64.b64encode("😀".encode()).decode()
    )
    with pytest.raises(TemplateError):
        render("$util.base64Encode($context.missing)", b"")


def test_repeated_query_names_are_comma_joined_and_params_looks_everywhere() -> None:
    template = "$input.params().querystring.get('a')|$input.params('a')|$input.params('X-H')"
    assert render(template, b"", {"X-H": "h"}, [("a", "1"), ("a", "2")]) == "1,2|1,2|h"


def test_key_set_iterates_in_java_hashmap_order_not_the_order_sent() -> None:
    template = "#foreach($k in $input.params().querystring.keySet())$k #end"
    sent = [("zeta", "1"), ("alpha", "2"), ("mid", "3")]
    order = render(template, b"", query=sent).split()
    assert sorted(order) == ["alpha", "mid", "zeta"]
    assert order == render(template, b"", query=list(reversed(sent))).split()  # not insertion


def test_missing_reference_renders_nothing_and_context_is_nested() -> None:
    assert render("[$nothing][$context.identity.sourceIp]", b"") == "[][192.0.2.1]"


def test_string_methods_are_java_methods() -> None:
    context = {**default_context(), "s": " Ab😀 "}
    assert render("$context.s.trim().toLowerCase().length()", b"", context=context) == "4"
    with pytest.raises(TemplateError):
        render("$context.s.substring(9)", b"", context=context)
