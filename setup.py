# cffi_modules still needs setup.py; all metadata but the licence lives in
# pyproject.toml (which says why the licence is here).
from setuptools import setup

setup(
    cffi_modules=["build_ffi.py:ffi"],
    zip_safe=False,
    license="Apache-2.0",
)
