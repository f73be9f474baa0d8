"""C_Login and C_Logout on an open session without closing it (ctypes).

python-pkcs11 logs in only when it opens a session and logs out only when it closes one.
The key-replication export needs both roles on one session in turn (:mod:`hsm.replication`):
the security officer creates the CKA_TRUSTED wrapping key - only the SO may set CKA_TRUSTED
(PKCS#11 v2.40 §4.8, §4.10; SoftHSM 2.6.1 ``P11AttrTrusted`` refuses anyone else with
CKR_ATTRIBUTE_READ_ONLY) - and then the user wraps the private key with it, since an SO
session cannot see private objects. A session object (the ephemeral wrapping key) lives only
as long as the session that made it, so that session must stay open across the two logins.

The calls go through the module's function list, as :mod:`hsm.os_locking` does: the library
``dlopen`` returns is the one python-pkcs11 loaded, so the session handles are shared.
"""

from __future__ import annotations

import ctypes

CKU_SO = 0
CKU_USER = 1

CKR_OK = 0x000
CKR_PIN_INCORRECT = 0x0A0
CKR_PIN_INVALID = 0x0A1
CKR_PIN_LEN_RANGE = 0x0A2
CKR_PIN_LOCKED = 0x0A4
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_NOT_LOGGED_IN = 0x101
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_USER_ANOTHER_ALREADY_LOGGED_IN = 0x104

_CK_RV = ctypes.c_ulong
_Login = ctypes.CFUNCTYPE(_CK_RV, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p,
                          ctypes.c_ulong)
_Logout = ctypes.CFUNCTYPE(_CK_RV, ctypes.c_ulong)
_Other = ctypes.c_void_p


class _CkFunctionListToLogout(ctypes.Structure):
    """CK_FUNCTION_LIST up to C_Logout (PKCS#11 v2.40 pkcs11f.h order)."""

    _fields_ = (
        ("version", ctypes.c_ubyte * 2),
        *((name, _Other) for name in (
            "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
            "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
            "C_InitToken", "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession",
            "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState",
            "C_SetOperationState")),
        ("C_Login", _Login),
        ("C_Logout", _Logout),
    )


class LoginError(Exception):
    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function} returned CKR 0x{rv:08X}")
        self.rv = rv


def _functions(path: str) -> _CkFunctionListToLogout:
    library = ctypes.CDLL(path)
    get_function_list = library.C_GetFunctionList
    get_function_list.argtypes = (ctypes.POINTER(ctypes.POINTER(_CkFunctionListToLogout)),)
    get_function_list.restype = _CK_RV
    head = ctypes.POINTER(_CkFunctionListToLogout)()
    rv = get_function_list(ctypes.byref(head))
    if rv != CKR_OK:
        raise LoginError("C_GetFunctionList", rv)
    return head.contents


def login(path: str, session_handle: int, user_type: int, pin: str) -> None:
    """C_Login on the session; raises :class:`LoginError` with the module's return value."""
    encoded = pin.encode("utf-8")
    rv = _functions(path).C_Login(session_handle, user_type, encoded, len(encoded))
    if rv != CKR_OK:
        raise LoginError("C_Login", rv)


def logout(path: str, session_handle: int) -> None:
    """C_Logout on the session; a token nobody is logged in to is not an error."""
    rv = _functions(path).C_Logout(session_handle)
    if rv not in (CKR_OK, CKR_USER_NOT_LOGGED_IN):
        raise LoginError("C_Logout", rv)
