"""One logged-in session per PKCS#11 token, shared and serialised: see pkcs11.py."""

from __future__ import annotations

import hmac
import os
import threading
from typing import Any, Callable, ClassVar, TypeVar

from ._pkcs11_uri import Pkcs11Uri
from .errors import Error

T = TypeVar("T")
EXTRA = "openssl-ccb[pkcs11]"
_REFUSED = {"CKR_PIN_INCORRECT", "CKR_PIN_INVALID", "CKR_PIN_LEN_RANGE"}
# After these the session is gone: reopen (and log in) once, then give up.
_GONE = {
    "CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT", "CKR_SESSION_HANDLE_INVALID",
    "CKR_SESSION_CLOSED", "CKR_USER_NOT_LOGGED_IN", "CKR_DEVICE_ERROR",
    "CKR_TOKEN_NOT_RECOGNIZED", "CKR_SLOT_ID_INVALID", "CKR_OBJECT_HANDLE_INVALID",
    "CKR_KEY_HANDLE_INVALID",
}  # fmt: skip


class PinRequired(Error):
    """The token needs a login and no PIN was given (the CLI then asks for one)."""


def pykcs11() -> Any:
    """PyKCS11, imported when first needed: the base install has only cffi."""
    try:
        import PyKCS11  # type: ignore[import-untyped]
    except ImportError as exc:
        raise Error(f"PKCS#11 needs PyKCS11: pip install '{EXTRA}'") from exc
    return PyKCS11


def code_name(exc: BaseException) -> str:
    p = pykcs11()
    return str(p.CKR.get(exc.value, f"CKR 0x{exc.value:08X}")) if hasattr(exc, "value") else ""


class Module:
    """A loaded PKCS#11 library; one per path per process (C_Initialize is once)."""

    _loaded: ClassVar[dict[str, Module]] = {}
    _loading: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str) -> None:
        p = pykcs11()
        self.path = path
        self.lib = p.PyKCS11Lib()
        # Every call into the module takes this lock: a session may not be used by
        # two threads at once, and a module initialised without CKF_OS_LOCKING_OK
        # may assume a single thread altogether.
        self.lock = threading.RLock()
        self.tokens: dict[tuple[int, str], Token] = {}
        try:
            self.lib.load(path)
        except p.PyKCS11Error as exc:
            raise Error(f"cannot load the PKCS#11 module {path!r}: {exc}") from exc

    @classmethod
    def get(cls, module: str | os.PathLike[str] | None, uri: Pkcs11Uri) -> Module:
        path = module or uri.module_path or os.environ.get("PKCS11_MODULE")
        if not path:
            raise Error(
                "no PKCS#11 module: pass module=, put module-path= in the URI "
                "or set PKCS11_MODULE (for example /usr/lib/softhsm/libsofthsm2.so)"
            )
        path = os.fspath(path)
        with cls._loading:
            if path not in cls._loaded:
                cls._loaded[path] = Module(path)
            return cls._loaded[path]

    def token(self, uri: Pkcs11Uri, pin: str | None) -> Token:
        """The one Token object for the token the URI names, logged in with ``pin``."""
        p = pykcs11()
        with self.lock:
            try:
                slots = [(s, self.lib.getTokenInfo(s)) for s in self.lib.getSlotList(True)]
            except p.PyKCS11Error as exc:
                raise Error(
                    f"PKCS#11 module {self.path!r}: cannot list its tokens to find "
                    f"{_describe(uri)}: {exc}"
                ) from exc
            wanted = {"label": uri.token, "manufacturerID": uri.manufacturer,
                      "serialNumber": uri.serial, "model": uri.model}  # fmt: skip
            found = [
                (slot, info) for slot, info in slots
                if uri.slot_id in (None, slot)
                and all(v is None or getattr(info, k).rstrip(" \0") == v for k, v in wanted.items())
            ]  # fmt: skip
            labels = [info.label.rstrip(" \0") for _, info in slots]
            if len(found) != 1:
                what = "no token" if not found else f"{len(found)} tokens"
                raise Error(
                    f"{what} in PKCS#11 module {self.path!r} match {_describe(uri)}"
                    f" (tokens present: {labels})"
                )
            slot, info = found[0]
            key = (slot, info.serialNumber.rstrip(" \0"))
            token = self.tokens.get(key)
            if token is not None and not token.same_pin(pin):
                raise Error(
                    f"PKCS#11 token {token.label!r} is already logged in by this process "
                    "with another PIN"
                )
            if token is None:
                token = Token(self, slot, info, pin)
            token.run(lambda session: None)  # opens and logs in now: a wrong PIN fails here
            self.tokens[key] = token  # kept only once logged in
            return token


def _describe(uri: Pkcs11Uri) -> str:
    parts = [f"{k}={v!r}" for k, v in (("token", uri.token), ("serial", uri.serial),
             ("manufacturer", uri.manufacturer), ("model", uri.model),
             ("slot-id", uri.slot_id)) if v is not None]  # fmt: skip
    return ", ".join(parts) or "any token"


class Token:
    """A token's session and login, reopened once when the token drops it.

    The PIN is kept (for that reopening) in a private slot that ``repr`` never
    shows; error messages name the token's label, never the PIN.
    """

    __slots__ = ("_pin", "generation", "label", "login_required", "module", "session", "slot")

    def __init__(self, module: Module, slot: int, info: Any, pin: str | None) -> None:
        p = pykcs11()
        self.module = module
        self.slot = slot
        self.label: str = info.label.rstrip(" \0")
        self.login_required = bool(info.flags & p.CKF_LOGIN_REQUIRED)
        self._pin = pin
        self.session: Any = None
        self.generation = 0  # bumped on each new session: object handles are per session

    def __repr__(self) -> str:
        return f"<PKCS#11 token {self.label!r} in slot {self.slot} of {self.module.path!r}>"

    def same_pin(self, pin: str | None) -> bool:
        if pin is None or self._pin is None:
            return pin is self._pin or not self.login_required
        return hmac.compare_digest(pin.encode(), self._pin.encode())

    def _open(self) -> Any:
        p = pykcs11()
        session = self.module.lib.openSession(self.slot, p.CKF_SERIAL_SESSION)
        if self.login_required:
            if self._pin is None:
                session.closeSession()
                raise PinRequired(f"PKCS#11 token {self.label!r} needs a PIN (pin=, or pin-value=)")
            try:
                session.login(self._pin)
            except p.PyKCS11Error as exc:
                if exc.value != p.CKR_USER_ALREADY_LOGGED_IN:
                    session.closeSession()
                    raise
        self.generation += 1
        return session

    def run(self, call: Callable[[Any], T]) -> T:
        """``call(session)`` under the module's lock; PyKCS11 errors become ccb.Error."""
        p = pykcs11()
        with self.module.lock:
            for attempt in (1, 2):
                try:
                    if self.session is None:
                        self.session = self._open()
                    return call(self.session)
                except p.PyKCS11Error as exc:
                    name = code_name(exc)
                    if name in _REFUSED:
                        raise Error(
                            f"PKCS#11 token {self.label!r} refused the PIN ({name})"
                        ) from None
                    if name == "CKR_PIN_LOCKED":
                        raise Error(f"PKCS#11 token {self.label!r}: the PIN is locked") from None
                    if name not in _GONE:
                        raise Error(f"PKCS#11 token {self.label!r}: {exc}") from exc
                    self.session = None
                    if attempt == 2:
                        raise Error(
                            f"PKCS#11 token {self.label!r} is gone (removed, or its session "
                            f"was closed): {exc}"
                        ) from exc
            raise AssertionError("unreachable")
