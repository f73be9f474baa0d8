"""Opening the CA's HSM token from the settings: wiring that every process that signs needs —
:mod:`api.composition` (the HTTP app and the CLI) and :mod:`api.crl_publishing` (`jpki crl
publish`) — kept apart from the services so that opening it imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from hsm.keystore import KeyStore, TokenConfig
from hsm.softhsm import (
    activate_softhsm_config,
    default_module_path,
    ensure_token,
    token_readers_lock,
)
from jpki.authority.recipe import Recipe
from jpki.errors import CaNotInitialised
from jpki.settings import Settings


def is_softhsm(module_path: str) -> bool:
    return "softhsm" in Path(module_path).name.lower()


def open_keystore(settings: Settings, recipe: Recipe, *, create_token: bool = False) -> KeyStore:
    """Open the CA token. With ``create_token`` (``jpki init``), create the SoftHSM token and its
    PINs first when they do not exist."""
    data_dir = settings.resolved_data_dir
    module = settings.hsm_module or default_module_path()
    if create_token:
        # The data directory holds the database (basic 4 information) and the token: private.
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir.chmod(0o700)
        user_pin, so_pin, _ = settings.ensure_pins()
    else:
        # Refuse before touching the directory: a mistyped --data-dir must stay untouched.
        pin = settings.user_pin()
        if pin is None:
            raise CaNotInitialised(f"no HSM PIN for {data_dir}: run `jpki init --data-dir "
                                   f"{data_dir}` or set JPKI_HSM_USER_PIN")
        user_pin = pin
    config = TokenConfig(module_path=module, token_label=recipe.token_label,
                         user_pin=user_pin, pool_size=settings.hsm_pool_size,
                         bulk_process=bulk_signing_process(settings.hsm_bulk_signer, module))
    if not is_softhsm(module):
        return KeyStore(config)
    # SoftHSM reads its configuration at C_Initialize: point it at our data directory first.
    activate_softhsm_config(data_dir)
    if create_token:
        ensure_token(data_dir, recipe.token_label, so_pin, user_pin)
    with token_readers_lock(data_dir):  # never while another process makes a token there
        return KeyStore(config)


def bulk_signing_process(choice: str, module_path: str) -> bool:
    """Whether bulk signatures go to a child process (hsm.bulk_signer): asked for, or by
    default for SoftHSM, which signs on this process's CPU (architecture §3.3)."""
    return choice == "process" or (choice == "auto" and is_softhsm(module_path))
