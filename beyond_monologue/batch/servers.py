"""The ComfyUI servers of one batch run: one :class:`ServerSlot` per ``--server``, each worked by its own thread.

A slot holds what belongs to one server: its client, the jobs queued on it and not yet followed
(``inflight``, oldest first), the files already uploaded to it (uploads go to each server's own
input folder), and, once the server stayed unreachable past ``--server-timeout``, why it was given
up (``retired``). Given-up servers stay out for the rest of the run (the pack's choice: simple and
safe; the next run tries every ``--server`` again).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .journal import JournalClosed


class ServerDown(RuntimeError):
    """The slot's server stayed unreachable past ``--server-timeout`` (message: what failed)."""


@dataclass
class ServerSlot:
    """One server of the run.

    Attributes:
        client: its :class:`..comfyui.comfy_client.ComfyClient` (or a test double).
        url: its address, as written into the journal's ``server`` fields.
        inflight: names of jobs queued on it and not yet followed, oldest first.
        uploaded: local file sha256 -> the name the server gave the uploaded copy.
        retired: why the server was given up (empty while it is used).
        done: jobs downloaded from it in this run.
    """

    client: object
    url: str
    inflight: deque = field(default_factory=deque)
    uploaded: dict = field(default_factory=dict)
    retired: str = ""
    done: int = 0


def make_slots(clients: list) -> list[ServerSlot]:
    """One slot per client; ``url`` is the client's ``base_url`` (``server<i>`` for a test double without one)."""
    return [ServerSlot(client, str(getattr(client, "base_url", f"server{i}"))) for i, client in enumerate(clients)]


def run_workers(slots: list[ServerSlot], work: Callable[[ServerSlot], None], halt: Callable[[], None]) -> None:
    """Run ``work(slot)`` in one daemon thread per slot and wait for them in the calling thread.

    The calling thread only waits (in short joins), so Ctrl-C (SIGINT) reaches it there. On any
    way out (every worker returned, Ctrl-C, a worker's exception) ``halt()`` tells the workers to
    stop; a worker still inside a network call stops at its next journal line, which raises
    :class:`.journal.JournalClosed` once the run has closed the journal.

    Raises:
        BaseException: the first exception a worker raised (re-raised here, e.g. a KeyboardInterrupt
            raised by a journal listener).
    """
    errors: list[BaseException] = []

    def guarded(slot: ServerSlot) -> None:
        try:
            work(slot)
        except JournalClosed:
            pass  # the run already stopped
        except BaseException as error:  # noqa: BLE001 -- handed to the calling thread, which raises it
            errors.append(error)
            halt()

    threads = [threading.Thread(target=guarded, args=(slot,), name=f"batch {slot.url}", daemon=True) for slot in slots]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.2)
    finally:
        halt()
    if errors:
        raise errors[0]
