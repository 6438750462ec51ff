"""One error policy for every handler.

* ``LimitError`` (bad input) -> ``gr.Error`` with its message, HTML-escaped.
* ``gr.Error`` raised on purpose -> passed through (its text must already be escaped).
* anything else -> logged in full with a short reference, and the user sees only
  "Something went wrong on the server (ref ...)", with no path and no traceback.
"""
from __future__ import annotations

import functools
import html
import inspect
import logging
import time
import uuid

import gradio as gr

from .limits import LimitError

log = logging.getLogger("stunet.studio")


def user_error(message: str, title: str = "Error") -> gr.Error:
    """A ``gr.Error`` whose (plain-text) message is escaped before it reaches the page."""
    return gr.Error(html.escape(message), title=title, print_exception=False)


def _convert(e: BaseException, name: str) -> BaseException:
    if isinstance(e, LimitError):
        return user_error(str(e), title="Invalid input")
    if isinstance(e, gr.Error):
        return e
    ref = uuid.uuid4().hex[:8]
    log.error("handler %s failed (ref %s)", name, ref, exc_info=(type(e), e, e.__traceback__))
    return gr.Error(f"Something went wrong on the server (ref {ref}). Please try again.",
                    title="Server error", print_exception=False)


def guarded(fn):
    """Decorate a handler (plain function or generator) with the error policy above."""
    name = getattr(fn, "__name__", "handler")
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (GeneratorExit, KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                raise _convert(e, name) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _convert(e, name) from None
        finally:
            log.debug("%s took %.3f s", name, time.perf_counter() - t0)
    return wrapper
