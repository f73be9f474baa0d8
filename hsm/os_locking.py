"""(Re-)initialise a PKCS#11 module so that it may be called from several threads.

python-pkcs11 calls ``C_Initialize(NULL)``. By the PKCS#11 specification that tells
the module the application will *not* call it from several threads at once, and
SoftHSM2 takes it literally: it disables all of its internal mutexes. python-pkcs11
releases the GIL around every C call, so two threads signing on two sessions run
inside SoftHSM at the same time without its locks, and the process dies with a
segmentation fault within a few hundred signatures (measured here with SoftHSM 2.6.1:
2 threads x 1000 signatures crash every time; see also opendnssec/SoftHSMv2#688).

python-pkcs11 offers no way to pass ``CK_C_INITIALIZE_ARGS``, so after it has loaded
the module we finalise and initialise it again through ctypes, with
``CKF_OS_LOCKING_OK``. ``dlopen`` of the same file returns the same loaded library, so
the function table python-pkcs11 holds keeps working and now runs with SoftHSM's
locks enabled. If a module answers ``CKR_CANT_LOCK`` we initialise it without
arguments again and report that calls must be serialised by the caller.

Only call these functions while no session of the module is open: ``C_Finalize``
closes every session of the process.
"""

from __future__ import annotations

import ctypes

_CK_RV = ctypes.c_ulong
_CK_FLAGS = ctypes.c_ulong

CKR_OK = 0x000
CKR_CANT_LOCK = 0x00A
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKF_OS_LOCKING_OK = 0x002


class _CkVersion(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _CkCInitializeArgs(ctypes.Structure):
    _fields_ = (
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", _CK_FLAGS),
        ("pReserved", ctypes.c_void_p),
    )


# C_Initialize(CK_VOID_PTR) and C_Finalize(CK_VOID_PTR) have the same signature.
_VoidPtrFunction = ctypes.CFUNCTYPE(_CK_RV, ctypes.c_void_p)


class _CkFunctionListHead(ctypes.Structure):
    """The first members of CK_FUNCTION_LIST: all that is needed here."""

    _fields_ = (
        ("version", _CkVersion),
        ("C_Initialize", _VoidPtrFunction),
        ("C_Finalize", _VoidPtrFunction),
    )


class Pkcs11InitError(Exception):
    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function} returned CKR 0x{rv:08X}")
        self.rv = rv


def _function_list(path: str) -> _CkFunctionListHead:
    # C_GetFunctionList is the one entry point every module must export; the
    # C_Initialize symbol itself need not be exported.
    library = ctypes.CDLL(path)
    get_function_list = library.C_GetFunctionList
    get_function_list.argtypes = (ctypes.POINTER(ctypes.POINTER(_CkFunctionListHead)),)
    get_function_list.restype = _CK_RV
    head = ctypes.POINTER(_CkFunctionListHead)()
    rv = get_function_list(ctypes.byref(head))
    if rv != CKR_OK:
        raise Pkcs11InitError("C_GetFunctionList", rv)
    return head.contents


def finalize(path: str) -> None:
    rv = _function_list(path).C_Finalize(None)
    if rv not in (CKR_OK, CKR_CRYPTOKI_NOT_INITIALIZED):
        raise Pkcs11InitError("C_Finalize", rv)


def initialize_with_os_locking(path: str) -> bool:
    """``C_Finalize`` then ``C_Initialize`` with ``CKF_OS_LOCKING_OK``.

    Returns True if the module now locks for itself, False if it refused
    (``CKR_CANT_LOCK``) and was initialised for single-threaded use instead.
    """
    functions = _function_list(path)
    rv = functions.C_Finalize(None)
    if rv not in (CKR_OK, CKR_CRYPTOKI_NOT_INITIALIZED):
        raise Pkcs11InitError("C_Finalize", rv)
    args = _CkCInitializeArgs(flags=CKF_OS_LOCKING_OK)
    rv = functions.C_Initialize(ctypes.addressof(args))
    if rv == CKR_OK:
        return True
    if rv == CKR_CANT_LOCK:
        rv = functions.C_Initialize(None)
        if rv == CKR_OK:
            return False
    raise Pkcs11InitError("C_Initialize", rv)
