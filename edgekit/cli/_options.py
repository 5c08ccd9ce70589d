"""Command-line options generated from the settings models, so each option is declared once (in settings.py).

Every generated option defaults to None: a value the user did not give is left to the recipe or to the
settings model's own default, which the help text shows.
"""

from __future__ import annotations

import inspect
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer


def with_settings(fields: list[tuple[str, Any]], enforce_required: bool = True) -> Callable[[Callable], Callable]:
    """Give `command(**options)` one typer option per settings field, after its own arguments.

    A required field becomes a required option, unless `enforce_required` is off (compress: a --recipe
    may give it, and the settings model names what is still missing)."""

    def decorate(command: Callable) -> Callable:
        own = list(inspect.signature(command, eval_str=True).parameters.values())
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD]
        arguments = [p for p in own if p.default is inspect.Parameter.empty]
        flags = [p for p in own if p.default is not inspect.Parameter.empty]
        generated = [_parameter(name, info, enforce_required) for name, info in fields]
        signature = inspect.Signature([*arguments, *generated, *flags])

        def wrapper(**kwargs: Any) -> Any:
            return command(**kwargs)

        wrapper.__signature__ = signature  # typer reads the parameters from here
        wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        wrapper.__doc__, wrapper.__name__ = command.__doc__, command.__name__
        return wrapper
    return decorate


def given(options: dict[str, Any], fields: list[tuple[str, Any]]) -> dict[str, Any]:
    """The generated options the user set (None: not given)."""
    names = {name for name, _ in fields}
    return {k: v for k, v in options.items() if k in names and v is not None}


def _parameter(name: str, info: Any, enforce_required: bool) -> inspect.Parameter:
    extra = info.json_schema_extra or {}
    flag = "--" + name.replace("_", "-")
    kind, choices = _cli_type(info.annotation)
    decls = [f"{flag}/--{extra['negative']}"] if extra.get("negative") else [flag]
    help_text = info.description or ""
    if not info.is_required() and info.default not in (None, False, ()) and "(default:" not in help_text:
        default = info.default.value if isinstance(info.default, Enum) else info.default
        help_text += f" (default: {default})"
    elif info.is_required() and not enforce_required:
        help_text += " (required)"
    if choices:
        kind = Literal.__getitem__(tuple(choices))  # typer shows and checks the choices
    option = typer.Option(*decls, help=help_text, show_default=False)
    if enforce_required and info.is_required():
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option])
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[kind], option])


def _cli_type(annotation: Any) -> tuple[Any, list[str] | None]:
    """The command-line type of a field's annotation, and its choices for a Literal or an Enum."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        # `str | dict | None` (a file path or, from the API, a mapping): the command line gives the path
        return _cli_type(args[0]) if len(args) == 1 else (str, None)
    if typing.get_origin(annotation) is typing.Literal:
        return str, [str(a) for a in args]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return str, [m.value for m in annotation]
    if typing.get_origin(annotation) is list:
        return list[args[0]], None
    if annotation in (str, int, float, bool, Path):
        return annotation, None
    return str, None
