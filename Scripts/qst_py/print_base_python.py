"""Prints the interpreter the current venv was made from (tests run a module import under it)."""
import sys

print(getattr(sys, "_base_executable", sys.executable))
