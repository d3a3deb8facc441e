# cffi_modules still needs setup.py; all metadata lives in pyproject.toml.
from setuptools import setup

setup(
    cffi_modules=["build_ffi.py:ffi"],
    zip_safe=False,
)
