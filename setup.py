"""Package list for setuptools: ``services/`` and ``orchestrator/`` install as
``voicemesh.services`` and ``voicemesh.orchestrator`` (see ``package-dir`` in
pyproject.toml); nothing top-level named ``services`` or ``orchestrator`` is
installed."""

from setuptools import find_packages, setup

MAPPED = ("services", "orchestrator")

setup(
    packages=find_packages(include=["voicemesh", "voicemesh.*"])
    + [f"voicemesh.{name}" for name in find_packages(include=[f"{m}" for m in MAPPED] + [f"{m}.*" for m in MAPPED])]
)
