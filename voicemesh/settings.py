"""Typed settings filled from CLI flags and ``VOICEMESH_*`` environment variables.

A settings class is a dataclass whose fields carry their help text in
``metadata["help"]``. ``add_arguments`` turns every field into a flag
(``--max-message-bytes``) whose default comes from the environment
(``VOICEMESH_MAX_MESSAGE_BYTES``), then from the field default; flags win
over the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")

ENV_PREFIX = "VOICEMESH_"


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its help text."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def environ(name: str, default: str = "") -> str:
    """One environment variable: every read of the environment goes through this module."""
    return os.environ.get(name, default)


def environment() -> dict[str, str]:
    """The whole environment, for a child process that should see what this one sees."""
    return dict(os.environ)


def env_name(field_name: str) -> str:
    """The environment variable of a settings field."""
    return ENV_PREFIX + field_name.upper()


def _convert(kind: Any, text: str) -> Any:
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if kind in (int, float, str):
        return kind(text)
    return text


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are settings (a field marked ``flag=False`` is filled in code)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag", True)]


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of the dataclass ``cls``.

    A flag the parser has already (another backend's class declares the same
    setting) is left as it is: both read the one value.
    """
    hints = get_type_hints(cls)
    for f in flag_fields(cls):
        kind = hints[f.name]
        kind = kind if kind in (bool, int, float, str) else str
        flag = "--" + f.name.replace("_", "-")
        if flag in parser._option_string_actions:
            continue
        env = env_name(f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if env in os.environ:
            try:
                default = _convert(kind, os.environ[env])
            except ValueError as exc:
                parser.error(f"{env}: {exc}")
        help_text = f"{f.metadata.get('help', '')} [env {env}; default {default!r}]"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=help_text,
                                choices=f.metadata.get("choices"))


def from_namespace(cls: type[T], namespace: argparse.Namespace) -> T:
    """Build ``cls`` from parsed arguments (extra attributes are ignored)."""
    names = {f.name for f in flag_fields(cls)}
    return cls(**{k: v for k, v in vars(namespace).items() if k in names})


def from_env(cls: type[T], **overrides: Any) -> T:
    """Build ``cls`` from the environment and defaults (for tests and embedding)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    values = vars(parser.parse_args([]))
    values.update(overrides)
    return from_namespace(cls, argparse.Namespace(**values))
