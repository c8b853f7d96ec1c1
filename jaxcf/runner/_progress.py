"""The runner's progress bar: rows (query x counterfactual) finished and the success rate so far.
Slot pools move it *within* a chunk, in host-visible steps of a few seconds; one-pass explainers
per chunk. :class:`Silent` stands in for it on a retry's passes, whose rows the bar already
counted.
"""

from __future__ import annotations

from tqdm.auto import tqdm


class Progress:
    """The progress bar: rows finished and the success rate so far."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="cf", disable=not enabled)
        self.bar.set_postfix_str("compiling" if initial < total else "")  # until a step shows
        self.base, self.solved_base, self.seen = initial, 0, 0

    def show(self, done: int, solved: int) -> None:
        """``done``/``solved`` rows of the current chunk so far."""
        self.bar.update(self.base + done - self.bar.n)
        finished = self.seen + done
        if finished:
            self.bar.set_postfix(success=f"{(self.solved_base + solved) / finished:.3f}")

    def note(self, text: str) -> None:
        """Shows ``text`` beside the bar until the next :meth:`show`."""
        self.bar.set_postfix_str(text)

    def chunk_done(self, rows: int, solved: int) -> None:
        self.show(rows, solved)
        self.base += rows
        self.seen += rows
        self.solved_base += solved

    def close(self) -> None:
        self.bar.close()


class Silent:
    """Progress for a retry's pass: the bar already counted its rows."""

    def show(self, done: int, solved: int) -> None:
        pass
