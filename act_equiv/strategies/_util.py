"""What the strategy modules share: pins as strategies, and keywords checked when a strategy is built."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

T = TypeVar("T")


def as_strategy(value: Any) -> st.SearchStrategy:
    """A pin as a strategy: a strategy is drawn from, a plain value is `st.just` that value."""
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def keywords(function: Callable[..., Any]) -> frozenset[str]:
    """The names `function` takes by keyword, not counting what its `**pins` accept."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(name for name, p in inspect.signature(function).parameters.items() if p.kind in kinds)


def check_keywords(where: str, given: Iterable[str], allowed: Collection[str]) -> None:
    """Refuse a keyword `where` does not know, naming it and the allowed ones. A misspelt pin must fail where the
    strategy is built: inside a draw it fails in every example, and a `**pins` catch-all would swallow it."""
    __tracebackhide__ = True  # the user's call is the frame to show
    for name in given:
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidArgument(f"{where} got an unexpected keyword {name!r}{hint}; allowed: "
                                  f"{', '.join(sorted(allowed)) or 'none'}")


def eager_composite(
    pins: Collection[str] = (), **nested: Collection[str]
) -> Callable[[Callable[..., T]], Callable[..., st.SearchStrategy[T]]]:
    """`st.composite` with its arguments checked when it is called, not lazily in the first draw.

    Allowed: the function's own keywords, the names in `pins` (what its `**pins` accept) and, for each keyword in
    `nested`, the keys of the dict it takes (`cases(batch={...})`). Signature and docstring stay the function's.
    """

    def decorate(function: Callable[..., T]) -> Callable[..., st.SearchStrategy[T]]:
        composite = st.composite(function)
        signature = inspect.signature(composite)
        allowed = keywords(composite) | set(pins)
        where = f"{function.__name__}()"

        @functools.wraps(composite)
        def strategy(*args: Any, **kwargs: Any) -> st.SearchStrategy[T]:
            __tracebackhide__ = True  # the user's call is the frame to show
            check_keywords(where, kwargs, allowed)
            for name, keys in nested.items():
                check_keywords(f"{function.__name__}({name}=...)", kwargs.get(name) or {}, keys)
            try:
                signature.bind(*args, **kwargs)
            except TypeError as error:
                raise InvalidArgument(f"{where}: {error}") from None
            return composite(*args, **kwargs)

        return strategy

    return decorate
