"""Just enough PromQL lexing to find the metrics an expression reads and to make its filters visible.

Not a PromQL parser: Prometheus itself judges whether an expression parses (the end-to-end test asks it).
This finds selectors (metric name + label names matched) and rewrites comparisons with `bool`, which is
all the checks need, for the expressions we write (no `{__name__=...}` selectors).
"""

from __future__ import annotations

import re
import typing

import attrs

if typing.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

_TOKEN: typing.Final = re.compile(
    r"""
     (?P<ws>\s+)
    |(?P<comment>\#[^\n]*)
    |(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
    |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,(){}\[\]@:])
    """,
    re.VERBOSE,
)
_COMPARISONS: typing.Final = frozenset({"==", "!=", ">=", "<=", ">", "<"})
_MATCHERS: typing.Final = frozenset({"=", "!=", "=~", "!~"})
_LABEL_LIST_KEYWORDS: typing.Final = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS: typing.Final = _LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
_AGGREGATIONS: typing.Final = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
)
_GRAFANA_VARIABLE: typing.Final = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@attrs.define(frozen=True, kw_only=True, slots=True)
class Selector:
    """A vector selector: the metric it names and the labels its matchers use."""

    metric: str
    labels: frozenset[str]


@attrs.define(frozen=True, kw_only=True, slots=True)
class _Token:
    kind: str
    text: str


def _tokens(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot lex {expr[position:]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append(_Token(kind=kind, text=match.group()))
        position = match.end()
    return tokens


def _significant(tokens: list[_Token]) -> list[_Token]:
    return [token for token in tokens if token.kind not in {"ws", "comment"}]


def _skip_group(tokens: list[_Token], start: int, opening: str, closing: str) -> int:
    """Index just past the group opened at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index].text == opening and tokens[index].kind == "op":
            depth += 1
        elif tokens[index].text == closing and tokens[index].kind == "op":
            depth -= 1
            if depth == 0:
                return index + 1
    raise ValueError(f"unbalanced {opening}{closing}")


def _matcher_labels(tokens: list[_Token], start: int, end: int) -> frozenset[str]:
    return frozenset(
        tokens[index].text
        for index in range(start, end - 1)
        if tokens[index].kind == "ident" and tokens[index + 1].text in _MATCHERS
    )


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr``, in order."""
    tokens = _significant(_tokens(expr))
    found: list[Selector] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1].text if index + 1 < len(tokens) else ""
        if token.kind == "op" and token.text == "[":
            index = _skip_group(tokens, index, "[", "]")
            continue
        if token.kind == "op" and token.text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        if token.kind != "ident":
            index += 1
            continue
        if token.text in _LABEL_LIST_KEYWORDS:
            index = _skip_group(tokens, index + 1, "(", ")") if following == "(" else index + 1
            continue
        if (
            token.text in _KEYWORDS
            or following == "("
            or (token.text in _AGGREGATIONS and following in {"by", "without"})
        ):
            index += 1
            continue
        if following == "{":
            end = _skip_group(tokens, index + 1, "{", "}")
            found.append(Selector(metric=token.text, labels=_matcher_labels(tokens, index + 2, end)))
            index = end
        else:
            found.append(Selector(metric=token.text, labels=frozenset()))
            index += 1
    return found


def metric_names(expr: str) -> set[str]:
    return {selector.metric for selector in selectors(expr)}


def bool_form(expr: str) -> str:
    """``expr`` with every comparison made a ``bool`` one: it keeps every series, valued 0 or 1.

    An alert expression filters series away while all is well; its bool form still returns the series
    it looks at, which shows that the metrics exist with the labels the expression matches on.
    """
    tokens = _tokens(expr)
    out: list[str] = []
    depth = 0
    for index, token in enumerate(tokens):
        out.append(token.text)
        if token.kind != "op":
            continue
        if token.text in {"{", "["}:
            depth += 1
        elif token.text in {"}", "]"}:
            depth -= 1
        elif depth == 0 and token.text in _COMPARISONS:
            rest = _significant(tokens[index + 1 :])
            if not rest or rest[0].text != "bool":
                out.append(" bool")
    return "".join(out)


def grafana_variables(expr: str) -> Iterator[str]:
    for match in _GRAFANA_VARIABLE.finditer(expr):
        yield next(group for group in match.groups() if group)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana's ``$var``, ``${var}``, ``${var:format}`` and ``[[var]]``; unknown ones raise KeyError."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return values[name]

    return _GRAFANA_VARIABLE.sub(replace, expr)
