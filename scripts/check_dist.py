"""Build the wheel and sdist, then use the wheel as a user would: outside the checkout.

Run by ``make dist-check`` (and so by ``make test``). Steps, each failing loudly:

1. ``python -m build`` makes the sdist and the wheel in a temporary folder;
   ``twine check`` renders their long description.
2. Both archives hold every module and package-data file that git tracks under
   ``aiopeewee_dist/`` (a subpackage left out of the wheel makes the package unimportable).
3. A fresh venv outside the checkout gets the wheel installed non-editable, with the extras that
   every module needs. From a folder outside the checkout it imports every module of the installed
   package (which must live in that venv), checks ``__version__`` against the metadata, runs
   ``aiopeewee-dist --help`` and the quickstart example.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "aiopeewee_dist"
# Every optional import of every module: the integrations need their web frameworks.
EXTRAS = "all,fastapi,aiohttp"

IMPORT_EVERY_MODULE = """
import importlib, importlib.metadata, pkgutil, sys
import aiopeewee_dist
assert aiopeewee_dist.__file__.startswith(sys.prefix), aiopeewee_dist.__file__
names = [m.name for m in pkgutil.walk_packages(aiopeewee_dist.__path__, "aiopeewee_dist.")]
names.remove("aiopeewee_dist.__main__")  # runs the CLI; checked below with -m
for name in names:
    importlib.import_module(name)
version = importlib.metadata.version("aiopeewee-dist")
assert aiopeewee_dist.__version__ == version, (aiopeewee_dist.__version__, version)
print(f"imported {len(names) + 1} modules of aiopeewee_dist {version} from {aiopeewee_dist.__file__}")
"""


def run(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a command, echoing it; raise with its output when it fails."""
    print("+", " ".join(str(a) for a in args).splitlines()[0][:160], flush=True)
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"check_dist: {args[0]} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def tracked_files() -> set[str]:
    """Package files git tracks (so nothing untracked in a developer's tree counts)."""
    out = run("git", "ls-files", PACKAGE, cwd=ROOT)
    return {line for line in out.splitlines() if line.endswith((".py", "py.typed"))}


def check_archives(dist: Path, expected: set[str]) -> Path:
    """Both archives hold every expected file; return the wheel's path."""
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as tar:
        # sdist members are "<name>-<version>/<path>"
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for label, names in (("wheel", in_wheel), ("sdist", in_sdist)):
        missing = sorted(expected - names)
        if missing:
            sys.exit(f"check_dist: the {label} lacks {len(missing)} package files: {missing}")
    print(f"wheel and sdist hold all {len(expected)} package files")
    return wheel


def smoke(wheel: Path, scratch: Path) -> None:
    """Install the wheel in a fresh venv and use it from outside the checkout."""
    venv = scratch / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", f"{wheel}[{EXTRAS}]")
    work = scratch / "work"
    work.mkdir()
    print(run(python, "-c", IMPORT_EVERY_MODULE, cwd=work), end="")
    run(venv / "bin" / "aiopeewee-dist", "--help", cwd=work)
    run(python, "-m", PACKAGE, "--help", cwd=work)
    quickstart = work / "quickstart.py"
    quickstart.write_text((ROOT / "examples" / "quickstart.py").read_text())
    run(python, quickstart, cwd=work)
    print("the installed wheel imports, answers --help and runs the quickstart")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aiopd-dist-") as tmp:
        scratch = Path(tmp)
        dist = scratch / "dist"
        run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
        run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
        smoke(check_archives(dist, tracked_files()), scratch)


if __name__ == "__main__":
    main()
