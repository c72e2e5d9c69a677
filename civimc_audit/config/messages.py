"""One line for people from a refused config: the file, the section, the key, the value as
written, and what is allowed.

Pydantic's error types are translated here and only here; what a key allows is read from the
model (its type, its range, or its description), so a range is written down once.

    /srv/civimc-audit.toml: [policy] honor_civicrm_consent = "false": must be true or false (unquoted)
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import types
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from civimc_audit.config.environment import SECRET_KEYS, SECRETISH_KEY_RE, redact
from civimc_audit.config.settings import ConfigFile, GroupId

BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
NUMBER_TYPES = {"int_type", "int_from_float", "float_type"}
# Values are checked against their type or range: each such refusal reads "must be <allowed>".
VALUE_ERRORS = {"bool_type", "int_type", "int_from_float", "float_type", "string_type",
                "greater_than", "greater_than_equal", "less_than", "less_than_equal",
                "finite_number", "literal_error", "string_pattern_mismatch", "string_too_short",
                "string_too_long", "tuple_type", "list_type", "time_zone", "dict_type",
                "api_root"}


@functools.cache
def sections() -> dict[str, type[BaseModel] | None]:
    """Section name → its model (None for a table of free keys such as [interests])."""
    out: dict[str, type[BaseModel] | None] = {}
    for name, info in ConfigFile.model_fields.items():
        model = info.annotation
        is_model = get_origin(model) is None and isinstance(model, type) and issubclass(model, BaseModel)
        out[name] = model if is_model and isinstance(model, type) else None
    return out


def section_model(section: str) -> type[BaseModel]:
    """The model of a section that has one (every section but the free-key tables)."""
    model = sections()[section]
    assert model is not None, f"[{section}] is a table of free keys"
    return model


def describe(exc: ValidationError, data: dict, source: Path | None) -> str:
    """The one line for the first problem, and how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    line = _line(dict(first), data)
    places = {tuple(e["loc"][:2]) for e in errors} - {tuple(first["loc"][:2])}
    if places:
        line += f" (and {len(places)} more problem{'s' if len(places) > 1 else ''})"
    where = f"{source}: " if source else "config: "
    return redact(where + line)


def _line(err: dict, data: dict) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "config_rule":
        return _rule_line(err["ctx"], data)
    if not loc:
        return f"must be a TOML file of sections ({err['msg']})"
    section = loc[0]
    if section not in sections():
        return _stray_line(section, data.get(section))
    if len(loc) == 1:
        return f"[{section}] must be a table: a line [{section}] with its keys below it"
    key = loc[1]
    value = data.get(section, {}).get(key)
    if kind == "extra_forbidden":
        return _unknown_key_line(section, key, value)
    return f"[{section}] {_key(key)} = {render(value)}: {_words(err, section, key, loc[2:])}"


def _words(err: dict, section: str, key: str, rest: tuple) -> str:
    """What is wrong with one key's value, in words."""
    kind = err["type"]
    if kind not in VALUE_ERRORS:  # a type this module does not know yet: pydantic's words
        return err["msg"].lower()
    if sections()[section] is None:  # [interests]: the key itself, or its value
        if rest == ("[key]",):
            return ("the key must be a Mailchimp interest id: 10 hex digits in lower case, "
                    'such as "9f8e7d6c5b"')
        return "must be a CiviCRM group id: " + allowed(_field_of(GroupId)) + _hint(kind, err["input"])
    info = section_model(section).model_fields[key]
    if rest:  # an item of a list
        return f"{render(err['input'])} is not allowed: must be {allowed(info)}"
    return f"must be {allowed(info)}{_hint(kind, err['input'])}"


def _hint(kind: str, value) -> str:
    """Why a value that looks right was refused: quotes, or a decimal point."""
    if kind == "bool_type" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return " (unquoted)"
    if kind in NUMBER_TYPES and isinstance(value, str) and _is_number(value):
        return " (unquoted)"
    if kind in ("int_type", "int_from_float") and isinstance(value, float):
        return " (without a decimal point)"
    if kind == "finite_number":
        return " (not inf or nan)"
    return ""


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text.replace("_", "")))
    except ValueError:
        return False


def _unknown_key_line(section: str, key: str, value) -> str:
    if key in SECRET_KEYS:
        return (f"[{section}] {_key(key)}: secrets are never read from the config file; "
                f"set {SECRET_KEYS[key]} in the environment")
    shown = "***" if SECRETISH_KEY_RE.search(key) else render(value)
    known = list(section_model(section).model_fields)
    return f"[{section}] {_key(key)} = {shown}: unknown key{_suggest(key, known, section)}"


def _suggest(key: str, known: list[str], section: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    for other, model in sections().items():
        if model is not None and other != section and key in model.model_fields:
            return f" (it belongs in [{other}])"
    return f"; [{section}] has {', '.join(known)}"


def _stray_line(name: str, value) -> str:
    """Something at the top of the file that is not a known section."""
    known = list(sections())
    if isinstance(value, dict):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean [{close[0]}]?)" if close else f"; the sections: {', '.join(known)}"
        return f"[{_key(name)}]: unknown section{hint}"
    home = [s for s, model in sections().items() if model is not None and name in model.model_fields]
    where = f"[{home[0]}]" if home else "a section such as [civicrm]"
    shown = "***" if SECRETISH_KEY_RE.search(name) else render(value)
    return (f"{_key(name)} = {shown}: a key outside any section; it belongs under {where} "
            "(keys above the first [section] line are not in any section)")


def _rule_line(ctx: dict, data: dict) -> str:
    section, keys = ctx["section"], ctx["keys"]
    table = data.get(section, {})
    if not keys:
        return f"[{section}]: {ctx['text']}"
    shown = ", ".join(f"{_key(k)} = {render(table.get(k))}" for k in keys)
    return f"[{section}] {shown}: {ctx['text']}"


# What a key allows, read from the model -------------------------------------------------------
def allowed(info: FieldInfo) -> str:
    """What a key allows, in words: its description if it has one, else its type and range."""
    if info.description:
        return info.description
    base = _without_none(info.annotation)
    if get_origin(base) is Literal:
        return "one of " + " or ".join(json.dumps(v) for v in get_args(base))
    noun = {bool: "true or false", int: "a whole number", float: "a number",
            str: "text in quotes"}.get(base, str(base))
    return noun + _range(info.metadata)


def _without_none(annotation):
    if get_origin(annotation) in (Union, types.UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return inner
    return annotation


def _range(metadata: list) -> str:
    """The bounds of a key's range in words: " between 1 and 10", ", 0 or more", …"""
    low = next((m for m in metadata if isinstance(m, (at.Ge, at.Gt))), None)
    high = next((m.le for m in metadata if isinstance(m, at.Le)), None)
    if isinstance(low, at.Ge) and high is not None:
        return f" between {_num(low.ge)} and {_num(high)}"
    words = []
    if isinstance(low, at.Gt):
        words.append(f" more than {_num(low.gt)}")
    elif isinstance(low, at.Ge):
        words.append(f", {_num(low.ge)} or more")
    if high is not None:
        words.append(f", at most {_num(high)}")
    if not words and any(isinstance(m, at.MinLen) and m.min_length for m in metadata):
        words.append(", not empty")
    return "".join(words)


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _field_of(annotated) -> FieldInfo:
    """The FieldInfo of an Annotated alias such as GroupId (its type and range)."""
    return FieldInfo.from_annotation(annotated)


# Values as they are written in TOML -------------------------------------------------------------
def render(value, limit: int = 80) -> str:
    """A parsed TOML value written back the way TOML writes it (shortened if long)."""
    text = _toml(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _key(key) -> str:
    key = str(key)
    return key if BARE_KEY_RE.match(key) else json.dumps(key, ensure_ascii=False)
