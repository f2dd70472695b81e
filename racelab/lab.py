"""``racelab lab``: open the workbook in JupyterLab on 127.0.0.1.

JupyterLab listens on loopback only and requires a token (printed with
the URL), and starts at notebook 01.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["lab_command", "main", "notebooks_dir"]

FIRST_NOTEBOOK = "01-reproduce-bpo-33694.ipynb"


def notebooks_dir() -> Path:
    """The workbook folder: beside the package in a checkout, else ./."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def lab_command(port: int, token: str, browser: bool = False) -> list[str]:
    """The ``jupyter lab`` command line racelab starts."""
    jupyter = shutil.which("jupyter", path=os.path.dirname(sys.executable))
    command = [jupyter or "jupyter", "lab"]
    if not browser:
        command.append("--no-browser")
    return command + [
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebooks_dir()}",
        f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}",
        # No calls to the outside world on start: news, update checks and
        # the language-server scan (which runs npm) are off.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LanguageServerManager.autodetect=False",
    ]


def main(port: int = 8888, browser: bool = False) -> int:
    token = os.environ.get("RACELAB_LAB_TOKEN") or secrets.token_hex(16)
    if os.geteuid() == 0:
        extra = ["--allow-root"]
    else:
        extra = []
    url = (f"http://127.0.0.1:{port}/lab/tree/{FIRST_NOTEBOOK}"
           f"?token={token}")
    print(f"racelab lab: JupyterLab at {url}", flush=True)
    try:
        return subprocess.call(lab_command(port, token, browser) + extra)
    except KeyboardInterrupt:
        return 0
