"""Reading recipes strictly: the YAML file (UTF-8, no duplicate keys) and `--set` overrides
(`section.key=value`, a value always given, a whole section never replaced), and the rule that a
boolean is not a number. `qtoolkit.recipe` validates what these return."""

from __future__ import annotations

import functools
import types
from collections.abc import Collection
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from qtoolkit.errors import QtoolError
from qtoolkit.textfiles import read_utf8

__all__ = ["bool_for_number", "parse_override", "read_recipe_file", "set_override"]


@functools.cache
def _loader():
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; SafeLoader reports it
                continue
            seen.setdefault(key, line)
            if first is not None:
                raise QtoolError(
                    f"{loader.name}:{line}: duplicate key '{key}' (first given on line {first}); "
                    "keep one"
                )
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML recipe file; one line naming the file (and line) if it is not one."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise QtoolError(f"recipe not found: {path}")
    text = read_utf8(path)
    loader = _loader()(text)
    loader.name = str(path)
    try:
        loaded = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise QtoolError(f"{path}: not valid YAML{where}") from None
    finally:
        loader.dispose()
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise QtoolError(
            f"{path}: a recipe must be a mapping of sections, not {type(loaded).__name__}"
        )
    return loaded


def parse_override(item: str) -> tuple[str, Any]:
    """Parse `section.key=value`; the value is read as YAML (numbers, booleans, lists, null)."""
    import yaml

    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise QtoolError(f"override '{item}' must look like section.key=value")
    if any(part.strip() == "" for part in key.split(".")):
        raise QtoolError(f"override '{item}': '{key}' is not a key (use section.key=value)")
    if raw.strip() == "":
        raise QtoolError(
            f"override '{item}' has no value (write {key}=null to unset it, {key}='' for an "
            "empty string)"
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, value


def set_override(
    data: dict[str, Any], dotted: str, value: Any, sections: Collection[str] = ()
) -> None:
    """Set a dotted key in a nested recipe dict. A whole section (one of `sections`) is never
    replaced: its keys are set one by one, so the rest of it keeps its values."""
    parts = dotted.split(".")
    if len(parts) == 1 and parts[0] in sections:
        raise QtoolError(
            f"override '{dotted}' would replace the whole '{dotted}' section; set its keys one "
            f"by one, e.g. {dotted}.KEY=VALUE"
        )
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise QtoolError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = str(value) if isinstance(value, Path) else value


def _members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _is_number(annotation: Any) -> bool:
    members = _members(annotation)
    return bool not in members and any(m in (int, float) for m in members)


def bool_for_number(annotation: Any, value: Any) -> bool:
    """True when `value` puts a boolean where `annotation` wants a number (pydantic would take
    `true` as 1), directly or inside a list/tuple of numbers."""
    if isinstance(value, bool):
        return _is_number(annotation)
    if isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value):
        for member in _members(annotation):
            items = [a for a in get_args(member) if a is not Ellipsis]
            if get_origin(member) in (list, tuple) and items and all(map(_is_number, items)):
                return True
    return False
