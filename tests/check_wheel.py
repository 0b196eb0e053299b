"""A plain install works: build the sdist of the checkout and the wheel from that sdist
(as ``python -m build`` does), install the wheel into a fresh virtual environment outside
the checkout, and from another folder run ``--version``, ``recipes``, a small ``build``,
``validate`` and ``verify``.

One implementation for two callers: tests/test_install.py (so ``make test`` runs it) and
.ci/run (``python tests/check_wheel.py``). Prints what it checked; fails with the command,
its exit code and its output.

The fresh environment reuses the dependencies installed in the running one (nothing is
downloaded): a ``.pth`` file in its site-packages names the running environment's
site-packages. A path line in a ``.pth`` only extends ``sys.path``; ``.pth`` files inside
that folder are not run, so the running environment's editable finder
(``__editable__*.pth``, which maps ``medimg_build`` to a checkout) is never installed,
and the wheel's own copy, earlier on ``sys.path``, is the one imported (checked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Local state of a checkout that a build neither needs nor should see: at its top...
_LOCAL_FOLDERS = (".git", ".venv", "build", "dist", "demo-output", "benchmarks/work")
# ...and anywhere.
_LOCAL_NAMES = ("__pycache__", ".pytest_cache")


def check_wheel(root: Path, scratch: Path) -> None:
    wheel = build_wheel(root, scratch / "dist")
    venv = fresh_venv_with(wheel, scratch / "venv")
    elsewhere = scratch / "elsewhere"
    elsewhere.mkdir()
    env = _isolated_env()
    _check_imported_from(venv, elsewhere, env)

    version = wheel.name.split("-")[1]
    out = _ok([venv / "bin" / "medimg-build", "--version"], elsewhere, env)
    assert out.strip() == f"medimg-build {version}", out

    listed = {line.split()[0] for line in
              _ok([venv / "bin" / "medimg-build", "recipes"], elsewhere, env).splitlines()[1:]}
    in_checkout = {p.stem for p in (root / "recipes").glob("*.yaml")}
    assert in_checkout and in_checkout <= listed, f"not installed: {in_checkout - listed}"

    _tiny_volume_folder(elsewhere / "my_ct")
    _ok([venv / "bin" / "medimg-build", "build", "volume-folder", "--source", "my_ct",
         "--out", "ct.zarr", "--workers", "1", "--quiet"], elsewhere, env)
    _ok([venv / "bin" / "medimg-build", "validate", "ct.zarr"], elsewhere, env)
    _ok([venv / "bin" / "medimg-build", "verify", "ct.zarr"], elsewhere, env)
    print(f"{wheel.name}: installed in {venv}; --version, recipes ({len(listed)}), build, "
          "validate and verify work from another folder")


def build_wheel(root: Path, dist: Path) -> Path:
    """The wheel built from the sdist of a copy of ``root`` (a build writes its
    ``build/`` and ``*.egg-info`` beside the sources; the checkout stays untouched).
    Uses the running environment's setuptools: no download, no build isolation."""
    sources = dist / "sources"
    local = {root / folder for folder in _LOCAL_FOLDERS}
    shutil.copytree(root, sources, symlinks=True, ignore=lambda folder, names: [
        n for n in names if n in _LOCAL_NAMES or n.endswith(".egg-info")
        or Path(folder, n) in local])
    sdist = dist / _backend("build_sdist", dist, cwd=sources)
    with tarfile.open(sdist) as archive:
        archive.extractall(dist / "unpacked", filter="data")
    (unpacked,) = (dist / "unpacked").iterdir()
    return dist / _backend("build_wheel", dist, cwd=unpacked)


def fresh_venv_with(wheel: Path, venv: Path) -> Path:
    """A new virtual environment holding ``wheel`` (without its dependencies), which
    sees the running environment's site-packages but no checkout."""
    _ok([sys.executable, "-m", "venv", "--without-pip", venv], venv.parent, os.environ)
    python = venv / "bin" / "python"
    # Installed before the .pth exists, so that pip, run with the new interpreter, sees
    # only the new environment (not the running one's medimg-build, which it would try
    # to uninstall).
    _ok([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", wheel], venv.parent, os.environ)
    site_packages = Path(_ok([python, "-c", "import sysconfig; "
                              "print(sysconfig.get_path('purelib'))"], venv, os.environ).strip())
    running = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "running-environment.pth").write_text("\n".join(running) + "\n")
    return venv


def _check_imported_from(venv: Path, cwd: Path, env: dict[str, str]) -> None:
    """medimg_build comes from the wheel, and no editable finder is installed (else a
    module missing from the wheel would still be found in a checkout)."""
    where, finders = _ok([venv / "bin" / "python", "-c", _WHERE_AND_FINDERS], cwd,
                         env).splitlines()
    assert Path(where).resolve().is_relative_to(venv.resolve()), f"imported from {where}"
    assert finders == "[]", f"editable finders installed: {finders}"


_WHERE_AND_FINDERS = """import sys, medimg_build
print(medimg_build.__file__)
print([f for f in sys.meta_path if getattr(f, "__module__", "").startswith("__editable__")])"""


def _isolated_env() -> dict[str, str]:
    """The caller's environment without what would point the CLI at a checkout."""
    drop = {"PYTHONPATH", "PYTHONHOME", "MEDIMG_RECIPES_DIR", "MEDIMG_SCHEMA_DIR",
            "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONNOUSERSITE": "1"}


def _tiny_volume_folder(source: Path) -> None:
    """One 8-voxel-cube CT volume at 1.5 mm, the layout the volume-folder recipe reads."""
    (source / "images").mkdir(parents=True)
    values = np.arange(8 ** 3, dtype=np.int16).reshape(8, 8, 8) - 200
    image = nib.Nifti1Image(values, np.diag([1.5, 1.5, 1.5, 1.0]))
    nib.save(image, source / "images" / "case0.nii.gz")


def _backend(hook: str, out: Path, cwd: Path) -> str:
    """Run setuptools' PEP 517 ``hook`` in ``cwd``; the name of the file it wrote in ``out``."""
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    return _ok([sys.executable, "-c", code], cwd, os.environ).strip().splitlines()[-1]


def _ok(command: list, cwd: Path, env: Mapping[str, str]) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} (in {cwd}) exited "
                             f"{result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="medimg-wheel-") as scratch:
        check_wheel(ROOT, Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
