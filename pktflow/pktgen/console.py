"""The interactive console: a live page above a `Pktgen:/>` prompt (prompt_toolkit).

The page (main, range or stats) is redrawn about once a second while the prompt takes
commands. Commands run one at a time on a helper thread, so `sleep` or `load` of a long
script never freezes the page, and a bad command only prints an error line.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from pktflow.pktgen.commands import CommandError
from pktflow.pktgen.page import render_page
from pktflow.pktgen.session import Pktgen

PROMPT = "Pktgen:/> "
MESSAGE_LINES = 6
REFRESH_S = 1.0


def run_console(gen: Pktgen) -> None:
    """Run the console on the current terminal until `quit` or Ctrl-D / Ctrl-C."""
    from prompt_toolkit.application import Application
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.layout import HSplit, Layout, Window
    from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
    from prompt_toolkit.layout.processors import BeforeInput

    messages: deque[str] = deque(maxlen=500)
    lock = threading.Lock()
    runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pktgen-cmd")
    app: Application | None = None

    def say(text: object) -> None:
        with lock:
            messages.extend(str(text).splitlines() or [""])
        if app is not None:
            app.invalidate()

    def run(line: str) -> None:
        try:
            out = gen.execute(line)
        except CommandError as e:
            out = f"error: {e}"
        except Exception as e:  # a command must never take the console down
            out = f"error: {type(e).__name__}: {e}"
        if out:
            say(out)
        if gen.quit_requested and app is not None:
            app.exit()

    def accept(buffer: Buffer) -> bool:
        line = buffer.text
        say(PROMPT + line)
        if line.strip():
            runner.submit(run, line)
        return False  # clear the input line

    def page_text() -> str:
        try:
            return render_page(gen, gen.page)
        except Exception as e:  # a page bug must not kill the console either
            return f"page {gen.page}: {type(e).__name__}: {e}"

    def message_text() -> str:
        with lock:
            return "\n".join(list(messages)[-MESSAGE_LINES:])

    keys = KeyBindings()

    @keys.add("c-c")
    @keys.add("c-d")
    def _exit(event) -> None:
        event.app.exit()

    prompt_line = Buffer(multiline=False, accept_handler=accept, history=InMemoryHistory())
    input_window = Window(BufferControl(prompt_line, input_processors=[BeforeInput(PROMPT)]),
                          height=1)
    layout = Layout(HSplit([
        Window(FormattedTextControl(page_text), wrap_lines=False),
        Window(height=1, char="-"),
        Window(FormattedTextControl(message_text), height=MESSAGE_LINES),
        input_window,
    ]), focused_element=input_window)
    app = Application(layout=layout, key_bindings=keys, full_screen=True,
                      refresh_interval=REFRESH_S)
    previous_output = gen.output
    gen.output = say
    gen.interpreter.show_pages = False
    # The engine's warnings (pool dry, damaged pcap) go to the message lines: written to
    # stderr they would tear the full-screen page.
    log_handler = _MessageHandler(say)
    engine_log = logging.getLogger("pktflow.pktgen")
    engine_log.addHandler(log_handler)
    try:
        app.run()
    finally:
        engine_log.removeHandler(log_handler)
        gen.output = previous_output
        gen.interpreter.show_pages = True
        runner.shutdown(wait=False, cancel_futures=True)


class _MessageHandler(logging.Handler):
    """Log records as console message lines."""

    def __init__(self, say) -> None:
        super().__init__(logging.WARNING)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(f"{record.levelname.lower()}: {record.getMessage()}")
