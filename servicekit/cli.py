"""Command lines generated from the typed configurations, with one-line user errors.

Every option of a command exists once, in a typed class: a service's pydantic-settings
class (``XappSettings``, ...) or a training/evaluation dataclass (``TrainConfig``, ...).
:func:`add_settings` and :func:`add_config` turn their fields into argparse flags (the
name with dashes, the type, the choices, the bounds and the help string come from the
field), so a default or a help text is never written twice. A flag generated from a
settings field defaults to None: only the flags given override the environment
(:meth:`servicekit.settings.ServiceSettings.from_cli`).

:class:`ArgumentParser` reads ``--intent -0.2,0.3,0.5,0.4`` as a value (argparse would
take it for an option), and :func:`run` turns a user error (a bad flag value, a missing
file, invalid settings) into one line on stderr naming it, with exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

EXIT_USAGE = 2
"""Exit code of every user error (argparse's own)."""


class UsageError(Exception):
    """A user error: reported as one line on stderr, exit code 2."""


# --------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------
_NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d)[\d.eE+\-,]*$")
"""A value that starts like a negative number (``-1``, ``-0.2,0.3``, ``-1e-3``)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that takes ``-0.2,0.3`` and other negative numbers as values.

    argparse reads a word starting with ``-`` as an option unless it is a plain negative
    number, so ``--intent -0.2,0.3,0.5,0.4`` failed with "expected one argument" instead
    of reaching the validator that says what is wrong with the vector.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_VALUE

    def error(self, message: str) -> typing.NoReturn:
        """One line (``prog: error``) instead of the usage block, exit code 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------
def _bounds(metadata: Iterable[Any]) -> list[tuple[str, float]]:
    out = []
    for m in metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                out.append((op, getattr(m, attr)))
    return out


def _check_bounds(value: float, bounds: Sequence[tuple[str, float]]) -> None:
    for op, limit in bounds:
        ok = {
            ">=": value >= limit,
            ">": value > limit,
            "<=": value <= limit,
            "<": value < limit,
        }[op]
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {op} {limit:g}, got {value:g}")


def _scalar(kind: type, bounds: Sequence[tuple[str, float]] = ()) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            noun = {int: "an integer", float: "a number"}[kind]
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        _check_bounds(value, bounds)
        return value

    convert.__name__ = kind.__name__
    return convert


def bounded(
    kind: type,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Callable[[str], Any]:
    """Type of a number flag with bounds (``--decisions`` must be >= 1, ...)."""
    bounds = [(op, v) for op, v in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
              if v is not None]  # fmt: skip
    return _scalar(kind, bounds)


def comma_list(item: Callable[[str], Any] = str) -> Callable[[str], list[Any]]:
    """Type of a comma-separated list flag (``--seeds 101,102``)."""

    def convert(text: str) -> list[Any]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
        return [item(p) for p in parts]

    convert.__name__ = "list"
    return convert


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected JSON: {exc}") from None


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _argument_kwargs(annotation: Any, bounds: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """argparse keyword arguments (type, choices, metavar, action) for an annotation."""
    annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
        annotation = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        choices = typing.get_args(annotation)
        return {"choices": choices, "type": type(choices[0])}
    if annotation in (int, float):
        return {"type": _scalar(annotation, bounds), "metavar": annotation.__name__.upper()}
    if annotation is Path:
        return {"type": Path, "metavar": "PATH"}
    if annotation is SecretStr:
        return {"type": str, "metavar": "SECRET"}
    if origin in (list, tuple):
        (item, *_rest) = typing.get_args(annotation) or (str,)
        item = _strip_optional(item)
        convert = _scalar(item, bounds) if item in (int, float) else item
        return {"type": comma_list(convert), "metavar": "A,B,..."}
    if origin is dict or annotation is dict:
        return {"type": _json_value, "metavar": "JSON"}
    return {"type": str}


def _shown(default: Any) -> str:
    """A default as ``--help`` shows it: lists comma-separated, as they are typed."""
    if isinstance(default, list | tuple):
        return ",".join(map(str, default))
    return str(default)


def flag_name(name: str) -> str:
    """``rapp_deadline_ms`` -> ``--rapp-deadline-ms``."""
    return "--" + name.replace("_", "-")


# --------------------------------------------------------------------------------------
# Flags from typed classes
# --------------------------------------------------------------------------------------
def add_settings(
    parser: argparse.ArgumentParser,
    cls: Any,
    names: Iterable[str] | None = None,
    *,
    exclude: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """One flag per field of a pydantic-settings class; each defaults to None.

    Args:
        parser: where the flags go.
        cls: the settings class.
        names: the fields to expose (default: all, in declaration order).
        exclude: fields not to expose.
        flags: flag spellings that differ from ``--field-name`` (e.g. ``--client-id``).

    Returns:
        Field name -> how an error names it (``--rate / SIM_RATE``), for :func:`run`.
    """
    prefix = (cls.model_config.get("env_prefix") or "").upper()
    fields: dict[str, FieldInfo] = cls.model_fields
    flags = dict(flags or {})
    skip = set(exclude)
    chosen = list(fields) if names is None else list(names)
    out = {}
    for name in chosen:
        if name in skip:
            continue
        info = fields[name]
        flag = flags.get(name, flag_name(name))
        default = info.get_default(
            call_default_factory=not info.default_factory_takes_validated_data
        )
        hidden = default is None or isinstance(default, SecretStr)
        shown = "" if hidden else f"; default {_shown(default)}"
        help_text = f"{info.description or name} (env {prefix}{name.upper()}{shown})"
        kwargs = _argument_kwargs(info.annotation, _bounds(info.metadata))
        parser.add_argument(flag, dest=name, default=None, help=help_text.replace("%", "%%"),
                            **kwargs)  # fmt: skip
        out[name] = f"{flag} / {prefix}{name.upper()}"
    return out


def add_config(
    parser: argparse.ArgumentParser,
    cls: Any,
    names: Iterable[str] | None = None,
    *,
    exclude: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    dest_prefix: str = "",
) -> dict[str, str]:
    """One flag per field of a configuration dataclass.

    A field's ``metadata`` gives its ``help`` and, optionally, bounds (``ge``, ``gt``,
    ``le``, ``lt``) and ``choices``. Flags default to the field's default (or
    ``defaults[name]``), so ``--help`` shows the real values.

    Returns:
        Field name -> flag.
    """
    flags = dict(flags or {})
    defaults = dict(defaults or {})
    skip = set(exclude)
    hints = typing.get_type_hints(cls, include_extras=True)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    chosen = list(by_name) if names is None else list(names)
    out = {}
    for name in chosen:
        if name in skip:
            continue
        f = by_name[name]
        meta = dict(f.metadata)
        bounds = [(op, meta[key]) for key, op in
                  (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if key in meta]  # fmt: skip
        kwargs = _argument_kwargs(hints[name], bounds)
        if "choices" in meta:
            kwargs["choices"] = tuple(meta["choices"])
        if name in defaults:
            default = defaults[name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        help_text = meta.get("help", name)
        if default is not None and kwargs.get("action") is not argparse.BooleanOptionalAction:
            help_text += f" (default {_shown(default)})"
        flag = flags.get(name, flag_name(name))
        parser.add_argument(flag, dest=dest_prefix + name, default=default,
                            help=help_text.replace("%", "%%"), **kwargs)  # fmt: skip
        out[name] = flag
    return out


def config_from_args(cls: Any, args: argparse.Namespace, dest_prefix: str = "", **values: Any):
    """A dataclass config from the flags :func:`add_config` added (and ``values``)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        dest = dest_prefix + f.name
        if hasattr(args, dest):
            kwargs[f.name] = getattr(args, dest)
    kwargs.update(values)
    return cls(**kwargs)


# --------------------------------------------------------------------------------------
# Output and errors
# --------------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None (JSON has no NaN or infinity)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def print_json(obj: Any, compact: bool = True) -> None:
    """Print ``obj`` as one line of JSON (``compact``) or indented."""
    print(json.dumps(json_safe(obj), indent=None if compact else 2, allow_nan=False))


USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    ValidationError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
)
"""What a command reports as one line: the user can fix it."""


def run(
    prog: str,
    command: Callable[[], int | None],
    flags: Mapping[str, str] | None = None,
) -> int:
    """Run a command; a user error becomes one line on stderr and exit code 2.

    Args:
        prog: the command's name in messages (``xapp-composer bench``).
        command: what to run; returns the exit code (None: 0).
        flags: field name -> flag, so invalid settings are named by their flag.
    """
    try:
        return int(command() or 0)
    except USER_ERRORS as exc:
        if isinstance(exc, ValidationError):
            from servicekit.settings import validation_message

            message = "invalid settings: " + validation_message(exc, dict(flags or {}))
        elif isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.strerror or exc}: {exc.filename}"
        else:
            message = str(exc) or type(exc).__name__
        print(f"{prog}: {message}", file=sys.stderr)
        return EXIT_USAGE
