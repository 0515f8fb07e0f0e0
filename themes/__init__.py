"""The themes that ship with ttag, installed as the package ``ttag_themes`` so they are in the wheel too.

This folder stays at the top of the repository; ``pyproject.toml`` maps it to that package name, and
``ttag_tui.themes`` finds the ``*.toml`` files through ``importlib.resources``.
"""
