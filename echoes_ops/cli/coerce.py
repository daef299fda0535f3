"""Turning command-line words into parameter values without the validation library.

Typer 0.29 coerces every parameter through a pydantic ``TypeAdapter`` built on first use;
importing pydantic and building the adapters costs more than most commands' own work
(docs/benchmarks/preload-wall.md#whole-commands-benchmarkswallpy). The parameters of this CLI
are plain ``str``, ``Path``, ``int``, ``float``, ``bool`` and lists of them, whose values the
common case can take as they are. :func:`install` gives each such parameter a coercion that
does exactly that and hands every other value (a word that is not a plain number, a number out
of range, anything unusual) to Typer's own coercion, so every error message stays Typer's, word
for word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from typer import _click
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer._param_types import coerce_cli_path
from typer.core import _TyperParameter

_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")


class _Slow(Exception):
    """The value needs Typer's own coercion (which also words any error)."""


@dataclass(frozen=True)
class LightParam(RuntimeParam):
    """Coercion of the common values of a plain parameter; everything else goes to Typer's."""

    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: Any, ctx: _click.Context) -> Any:
        annotation: Any = self.annotation
        try:
            if get_origin(annotation) is list:
                if not isinstance(value, list | tuple):
                    raise _Slow
                (item,) = get_args(annotation)
                return [self._leaf(item, v, param, ctx) for v in value]
            return self._leaf(annotation, value, param, ctx)
        except _Slow:
            slow = build_runtime_param(self.descriptor)
            return slow._coerce_value(value, param=param, ctx=ctx)

    def _leaf(self, annotation: Any, value: Any, param: Any, ctx: _click.Context) -> Any:
        kind = type(value)
        if annotation is bool:
            if kind is not bool:
                raise _Slow
            return value
        if annotation is str:
            if kind is not str:
                raise _Slow
            return value
        if annotation is Path:
            if kind is str and value:
                value = Path(value)
            elif not isinstance(value, Path):
                raise _Slow
            return coerce_cli_path(value, self.parameter_info, path_type=Path, param=param, ctx=ctx)
        number: int | float
        if annotation is int:
            if kind is int:
                number = value
            elif kind is str and _INT.fullmatch(value):
                number = int(value)
            else:
                raise _Slow
        elif annotation is float:
            if kind is float or kind is int or (kind is str and _FLOAT.fullmatch(value)):
                number = float(value)
            else:
                raise _Slow
        else:
            raise _Slow
        info = self.parameter_info
        if (info.min is not None and number < info.min) or (
            info.max is not None and number > info.max
        ):
            raise _Slow  # Typer clamps or words the bound
        return number


_PLAIN = (str, Path, int, float, bool)


def _light(descriptor: TypeDescriptor) -> LightParam | None:
    info = descriptor.parameter_info
    if info.parser is not None or info.path_type is not None:
        return None
    if descriptor.file_annotation is not None:
        return None
    annotation: Any = descriptor.annotation
    leaf = annotation
    if get_origin(annotation) is list:
        args = get_args(annotation)
        if len(args) != 1:
            return None
        leaf = args[0]
    if leaf not in _PLAIN:
        return None
    if (leaf is int or leaf is float) and info.clamp:
        return None
    return LightParam(parameter_info=info, annotation=annotation, descriptor=descriptor)


def install(params: list[Any]) -> None:
    """Give each plain parameter (not yet coerced) the light coercion."""
    for param in params:
        if isinstance(param, _TyperParameter) and param._runtime_param is None:
            light = _light(param.type_descriptor)
            if light is not None:
                param._runtime_param = light
