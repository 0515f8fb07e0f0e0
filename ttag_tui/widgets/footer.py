"""Textual's footer, recomposed only when the keys it shows change.

Textual's ``Footer`` rebuilds all its keys on every bindings update (focus moves, keymap set, screen resumed), and a
start-up sends several identical ones: each rebuild restyles every key and costs a frame of start-up time.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Footer


class KeyFooter(Footer):
    _shown: tuple[Any, ...] | None = None

    def _keys_shown(self) -> tuple[Any, ...]:
        return tuple(
            (binding.key, binding.description, binding.action, enabled, tooltip)
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show
        )

    async def recompose(self) -> None:
        shown = self._keys_shown()
        if shown == self._shown:
            return
        self._shown = shown
        await super().recompose()
