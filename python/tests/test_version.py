"""One version for the server and the Python package: the ``toolstream`` binary, the crate
(Cargo.toml, where it is set for the binary), the package's ``__version__`` (where it is set for
Python; pyproject.toml reads it) and the installed package's metadata all say the same."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess

from conftest import REPO, toolstream_bin

import toolstream


def _crate_version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    assert match, "Cargo.toml has no [package] version"
    return match.group(1)


def test_the_binary_and_the_python_package_have_one_version() -> None:
    crate = _crate_version()
    binary = subprocess.run(
        [toolstream_bin(), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert binary == ["toolstream", crate]
    assert toolstream.__version__ == crate
    assert importlib.metadata.version("toolstream") == crate
