"""A runner that reports where its worker found things, for the tests of worker isolation (packaging, wheel,
audiocraft environment), and the small helpers that fake an environment's own packages."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

# A runner that says where its worker found things, without importing them (find_spec: a stub torch need not work).
PROBE_RUNNER = textwrap.dedent(
    """
    import importlib.util, os, sys
    import numpy as np
    import runners
    from runners.contract import BaseRunner

    class ProbeRunner(BaseRunner):
        name = "probe"
        version = "1"

        def load_model(self, ctx):
            pass

        def generate(self, request, ctx):
            clip = self.make_clip(request, 0, np.zeros(80, dtype=np.float32), 8000)
            clip.metadata["probe"] = {
                "executable": sys.executable,
                "torch": importlib.util.find_spec("torch").origin,
                "runners": runners.__file__,
                "pythonpath": os.environ.get("PYTHONPATH", ""),
            }
            return [clip]
    """
)


def site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def stub_torch(folder: Path, where: str) -> None:
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text(f"WHERE = {where!r}\n")
