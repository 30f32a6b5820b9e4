"""Reading recipes strictly: the YAML file (UTF-8, no duplicate keys, aliases that expand to a
bounded size) and `--set` overrides (`section.key=value`, a value always given, a whole section
never replaced), and `StrictModel`, the base of every recipe section: no unknown key, no
boolean for a number, finite numbers only. `qtoolkit.recipe` validates what these return."""

from __future__ import annotations

import copy
import functools
import types
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from qtoolkit.errors import QtoolError
from qtoolkit.textfiles import read_utf8

__all__ = [
    "MAX_YAML_VALUES",
    "StrictModel",
    "bool_for_number",
    "merge_recipe_data",
    "format_validation_error",
    "parse_override",
    "read_recipe_file",
    "set_override",
]

# A recipe is a few hundred values; aliases (&a ... *a) that expand past this are a "billion
# laughs" document, which would fill memory (and config.json) when expanded.
MAX_YAML_VALUES = 100_000


class StrictModel(BaseModel):
    """Base of every recipe section: no unknown keys, no inf/nan floats, no `true` for a number
    (pydantic would take it as 1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info) -> Any:
        if bool_for_number(cls.model_fields[info.field_name].annotation, value):
            raise ValueError(f"expected a number, not {str(value).lower()}")
        return value


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
    try:
        loaded = _load_bounded(read_utf8(path), str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise QtoolError(f"{path}: not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise QtoolError(
            f"{path}: a recipe must be a mapping of sections, not {type(loaded).__name__}"
        )
    return loaded


def _load_bounded(text: str, name: str) -> Any:
    """The YAML document in `text`, refused when its aliases expand past MAX_YAML_VALUES."""
    loader = _loader()(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_VALUES:
            raise QtoolError(
                f"{name}: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; "
                "write the values out instead of repeating aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """How many values `node` holds once every alias is expanded (shared nodes counted once per
    use, computed once each; a node inside itself counts 1)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    sizes[key] = 1
    if isinstance(node.value, list):
        items = [n for pair in node.value for n in (pair if isinstance(pair, tuple) else (pair,))]
        sizes[key] = 1 + sum(_expanded_size(item, sizes) for item in items)
    return sizes[key]


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
        value = _load_bounded(raw, f"override '{item}'")
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


def format_validation_error(
    err: ValidationError, source: str, overrides: list[str], labels: dict[str, str]
) -> str:
    """One line for a recipe that does not validate: where the bad value came from (the file,
    or the override or flag that set it: `labels` name flags, e.g. `--max-shape 32x0`), the key
    and what is wrong."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])

    def sets_it(override: str) -> bool:  # the key, its section, or (a section's check) in it
        key = override.partition("=")[0].strip()
        return key in (loc, loc.rpartition(".")[0]) or key.startswith(f"{loc}.")

    given = [o for o in overrides if sets_it(o)]
    if given:  # the bad value came from the command line (a flag or --set), not from the file
        source = labels.get(given[-1]) or f"override '{given[-1]}'"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'"
    return f"{source}: '{loc}': {first['msg'].removeprefix('Value error, ')}"


def merge_recipe_data(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` laid over `base`, section by section: a key in `top` replaces the same key in
    `base`; nested sections merge. Neither input is changed."""
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_recipe_data(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
