"""The attack's options on the command line, built from :class:`AttackConfig`'s field metadata.

One flag per field (``--lambda-rho`` for ``lambda_rho``), with the field's
type, default, choices and help line. Everyday fields show in ``--help``, the
rest under ``--help-all``, grouped as :data:`~napari_advseg.attack.config.GROUPS`.
``--config FILE`` (TOML or JSON) sets fields too; ``--sliders on`` turns
the four latent-slider terms on at once (``off``: their defaults); precedence: the defaults, then the
file, then ``--sliders``, then the flags of single fields. Every optional field
takes ``none``; an optional limit or strength also takes 0 for off.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from napari_advseg.attack.config import GROUPS, SLIDER_OPTIONS_OFF, SLIDER_OPTIONS_ON, AttackConfig
from napari_advseg.cli.arguments import ExpertOptions
from napari_advseg.errors import AdvsegError

__all__ = ["add_attack_options", "attack_fields", "config_from", "load_config_file", "parse_value"]


def attack_fields() -> dict[str, dataclasses.Field]:
    """AttackConfig's fields a new run can set (a field with one choice has nothing to choose)."""
    return {f.name: f for f in dataclasses.fields(AttackConfig) if len(f.metadata["choices"]) != 1}


def _base_type(f: dataclasses.Field) -> str:
    """``"float"``, ``"int"``, ``"bool"``, ``"str"`` or ``"list"``, from the field's annotation."""
    annotation = str(f.type).replace(" ", "")
    for name in ("list", "float", "int", "bool", "str"):
        if annotation.startswith(name):
            return name
    raise TypeError(f"AttackConfig.{f.name}: no command-line type for {f.type}")


def _optional(f: dataclasses.Field) -> bool:
    return str(f.type).replace(" ", "").endswith("|None")


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_value(f: dataclasses.Field, text: str) -> Any:
    """A field's value from text, the one parse for flags and strings in a config file.

    ``none`` is None for every optional field; 0 is None (off) for the
    optional limits and strengths too.
    """
    kind = _base_type(f)
    text = text.strip()
    if _optional(f) and text.lower() == "none":
        return None
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()] or None
    if kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "on", "off", "yes", "no", "1", "0"):
            raise ValueError(f"expected on or off, got {text!r}")
        return lowered in ("true", "on", "yes", "1")
    if kind == "str":
        return text
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind == 'int' else 'a number'}"
                         f"{' or none' if _optional(f) else ''}, got {text!r}") from None
    return None if f.metadata["zero_is_off"] and value == 0 else value


def _flag_type(f: dataclasses.Field):
    def convert(text: str) -> Any:
        try:
            return parse_value(f, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = _base_type(f)  # argparse names the type in its errors
    return convert


def _metavar(f: dataclasses.Field) -> str:
    kind = _base_type(f)
    base = {"int": "N", "float": "X", "list": "A,B", "str": "S"}.get(kind, "S")
    return f"{base}|none" if _optional(f) and kind != "list" else base


def add_attack_options(p: argparse.ArgumentParser, expert: ExpertOptions, skip: tuple[str, ...] = ()) -> None:
    """``--config`` and one flag per settable AttackConfig field; the non-everyday ones hidden by ``expert``.

    The flags leave the namespace untouched unless given (defaults come from
    :func:`config_from`), so a config file can sit between the two. ``skip``:
    fields the command sets itself (no flag).
    """
    defaults = AttackConfig()
    everyday = p.add_argument_group("attack (everyday options; --help-all lists every option, by group)")
    everyday.add_argument("--config", type=Path, metavar="FILE",
                          help="TOML or JSON file of attack options (AttackConfig fields, e.g. a run folder's "
                               "config.json); flags given here override it")
    everyday.add_argument("--sliders", choices=["on", "off"], default=argparse.SUPPRESS,
                          help="on: train with the four latent-slider terms (single_alone, lambda_alone, "
                               "lambda_excess, lambda_mean), so that each latent number of the Explore tab "
                               "moves the fields and the Dice on its own, at the cost of a weaker attack in about "
                               "twice the time (docs/tuning.md); off: without them (default: off; a flag for one "
                               "of the four still wins)")
    groups = {key: p.add_argument_group(f"attack: {title}") for key, title in GROUPS.items()}
    for name, f in attack_fields().items():
        if name in skip:
            continue
        default = getattr(defaults, name)
        help_text = f"{f.metadata['help']} (default: {_show(default)})".replace("%", "%%")
        choices = f.metadata["choices"] or None
        group = everyday if f.metadata["everyday"] else groups[f.metadata["group"]]
        flag = "--" + name.replace("_", "-")
        if _base_type(f) == "bool":
            action = group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                        default=argparse.SUPPRESS, help=help_text)
        else:
            action = group.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=help_text,
                                        choices=list(choices) if choices else None,
                                        type=None if choices else _flag_type(f),
                                        metavar=None if choices else _metavar(f))
        if not f.metadata["everyday"]:
            expert.hide(action)


def _coerce(f: dataclasses.Field, value: Any, source: str) -> Any:
    """A config file's value for field ``f``, checked as a flag's would be."""
    name = f.name
    legacy = f.metadata["legacy"]
    if value in legacy:
        raise AdvsegError(f"{source}: {name} {value!r} is kept only so that old checkpoints load; new runs use "
                          f"{f.metadata['choices'][0]!r}")
    if isinstance(value, str) and _base_type(f) != "str":
        try:
            return parse_value(f, value)
        except ValueError as exc:
            raise AdvsegError(f"{source}: {name}: {exc}") from None
    kind = _base_type(f)
    if value is None:
        if _optional(f):
            return None
    elif kind == "bool" and isinstance(value, bool):
        return value
    elif kind == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value) or None
    elif kind == "str" and isinstance(value, str):
        if f.metadata["choices"] and value not in f.metadata["choices"]:
            raise AdvsegError(f"{source}: {name} must be one of {', '.join(f.metadata['choices'])}, got {value!r}")
        return value
    elif kind in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        if kind == "int" and value != int(value):
            raise AdvsegError(f"{source}: {name} must be an integer, got {value!r}")
        value = int(value) if kind == "int" else float(value)
        return None if f.metadata["zero_is_off"] and value == 0 else value
    raise AdvsegError(f"{source}: {name} cannot be {value!r} (expected {kind}{' or none' if _optional(f) else ''})")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The AttackConfig fields a TOML (``.toml``) or JSON file sets, each checked; unknown keys are an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdvsegError(f"{path}: config file not found") from None
    except OSError as exc:
        raise AdvsegError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise AdvsegError(f"{path}: a config file is .toml or .json")
    except (ValueError, json.JSONDecodeError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise AdvsegError(f"{path}: not valid {path.suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise AdvsegError(f"{path}: expected a table of attack options at the top level")
    fields = {f.name: f for f in dataclasses.fields(AttackConfig)}
    for key in data:
        if key not in fields:
            raise AdvsegError(f"{path}: unknown attack option {key!r} (the keys are AttackConfig fields, "
                              f"e.g. gamma, steps, phi_rho_max)")
    return {key: _coerce(fields[key], value, str(path)) for key, value in data.items()}


def config_from(args: argparse.Namespace) -> AttackConfig:
    """The attack config of a command: the defaults, then ``--config``'s file, then ``--sliders``, then the
    flags given."""
    values = load_config_file(args.config) if getattr(args, "config", None) is not None else {}
    sliders = getattr(args, "sliders", None)
    if sliders is not None:  # over the file
        values.update(SLIDER_OPTIONS_ON if sliders == "on" else SLIDER_OPTIONS_OFF)
    values.update({name: getattr(args, name) for name in attack_fields() if hasattr(args, name)})
    return AttackConfig(**values)
