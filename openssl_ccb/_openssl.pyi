# The compiled CFFI module (built by build_ffi.py). Its ffi and lib are
# dynamic: lib's functions are the C declarations in build_ffi.py.
from typing import Any

ffi: Any
lib: Any
