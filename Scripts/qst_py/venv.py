"""Make a script run inside the QST venv ($QST_CACHE/venv), creating it via Scripts/setup-env.sh if needed.

Call `ensure_venv()` at the very top of a script, before importing numpy & co. If the current
interpreter is not the venv's, the script is re-executed with the venv's python (same argv).
Only a script run as `__main__` is re-executed: a module imported by another program (qst4_reader,
reference_forward) must not replace that program's process, so there the current interpreter is
used as it is, and a missing package is an ImportError naming the venv.
"""
import os
import subprocess
import sys

SCRIPTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir() -> str:
    return os.environ.get("QST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "qst")


def venv_python() -> str:
    return os.path.join(cache_dir(), "venv", "bin", "python")


def _inside_venv(py: str) -> bool:
    venv_root = os.path.realpath(os.path.dirname(os.path.dirname(py)))
    return os.path.realpath(sys.prefix) == venv_root


def ensure_venv(required=("numpy",)) -> None:
    caller = sys._getframe(1).f_globals.get("__name__")
    if caller != "__main__":
        missing = [m for m in required if not _importable(m)]
        if missing:
            raise ImportError(f"{caller} needs {', '.join(missing)}: run it with {venv_python()} "
                              "(Scripts/setup-env.sh creates it)")
        return
    py = venv_python()
    if _inside_venv(py):
        missing = [m for m in required if not _importable(m)]
        if missing:
            _run_setup()
        return
    if not os.path.exists(py) or subprocess.call(
        [py, "-c", "import " + ",".join(required)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) != 0:
        _run_setup()
    os.execv(py, [py] + sys.argv)


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _run_setup() -> None:
    setup = os.path.join(SCRIPTS_DIR, "setup-env.sh")
    env = dict(os.environ, QST_CACHE=cache_dir())
    if subprocess.call(["bash", setup], env=env, stdout=subprocess.DEVNULL) != 0:
        sys.exit(f"{setup} failed; cannot prepare the QST venv")
