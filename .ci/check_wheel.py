"""The wheel works on its own: build it, install it alone, run the demo.

``tox -e wheel`` runs this: ``python -m build --wheel`` on a clean copy of
the tree, a fresh virtualenv with nothing but the wheel and its
dependencies (no extra: the demo runs on SQLite), then, in an empty
working directory outside the source tree (so ``import flowbaton`` can
only find the installed copy), ``flowbaton --version`` and ``flowbaton
demo``. It catches what the test suite, which runs on the source tree,
cannot: a module, template or Lua script left out of the wheel, a
dependency missing from pyproject.toml, a broken entry point.

    python .ci/check_wheel.py --work-dir /tmp/wheel-check
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Not copied for the build: history, environments, caches and earlier build output.
SKIP = (".git", ".tox", ".venv", ".venvs", "build", "dist", "site", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis")


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, quiet: bool = False) -> str:
    """Run a command and return its output; echo it (``quiet``: only if it fails), stop if it fails."""
    print("$", " ".join(str(part) for part in command), flush=True)
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    if done.returncode != 0 or not quiet:
        print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"check_wheel: exit {done.returncode} from {' '.join(str(part) for part in command)}")
    return done.stdout


def build_wheel(work: Path) -> Path:
    """The wheel, built from a copy of the tree: setuptools reuses ``build/lib``
    in the folder it builds in, so a module deleted since an earlier build
    would still ship; the copy has none (and the tree gets none)."""
    source, dist = work / "source", work / "dist"
    for folder in (source, dist):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, source, quiet=True)
    wheels = sorted(dist.glob("flowbaton-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"check_wheel: expected one wheel in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def fresh_venv(folder: Path, wheel: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    bin_dir = folder / ("Scripts" if os.name == "nt" else "bin")
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, quiet=True)
    return bin_dir


def clean_env(bin_dir: Path) -> dict[str, str]:
    """The venv first on PATH, and nothing that points Python back at the source tree."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not key.startswith("FLOWBATON_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    return env


def check(bin_dir: Path, workdir: Path, version: str) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = clean_env(bin_dir)
    where = run(bin_dir / "python", "-c", "import flowbaton; print(flowbaton.__file__)", cwd=workdir, env=env)
    if not Path(where.strip()).is_relative_to(bin_dir.parent):
        raise SystemExit(f"check_wheel: flowbaton was imported from outside the fresh venv ({where.strip()})")
    shown = run(bin_dir / "flowbaton", "--version", cwd=workdir, env=env)
    if version not in shown:
        raise SystemExit(f"check_wheel: flowbaton --version printed {shown.strip()!r}, the wheel is {version}")
    run(bin_dir / "flowbaton", "demo", cwd=workdir, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="scratch folder (the wheel, the venv, the demo)")
    args = parser.parse_args()
    work = args.work_dir.resolve()
    wheel = build_wheel(work)
    version = wheel.name.split("-")[1]
    bin_dir = fresh_venv(work / "venv", wheel)
    check(bin_dir, work / "run", version)
    print(f"check_wheel: {wheel.name} installs alone, and flowbaton --version and flowbaton demo run from it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
