"""The emulated JPKI-AP command by command: selection, reading, signing, issuer-only commands
and the status words of refusals (reference §4.1–§4.5)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from devices.card.client import JpkiCard
from devices.card.emulator import JpkiCardEmulator
from devices.card.errors import (
    CardFileNotFound,
    CertificateAbsent,
    IssuerAuthenticationFailed,
    SecurityStatusNotSatisfied,
)
from devices.card.jpki_ap import (
    TOKEN_LABEL_ANDROID,
    CertSlot,
    Ef,
    Key,
    Pin,
    SignScheme,
    sha256_digest_info,
)
from devices.card.transport import InProcessTransport
from tests.devices.card.conftest import AUTH_PIN, SIGN_PASSWORD, EmulatedCard, Personalisation

SELECT_AP = "00A4040C0AD392F000260100000001"


class TestSelect:
    def test_the_card_applications_only(self, card: EmulatedCard) -> None:
        # JPKI-AP and the two 券面 APs (reference §4.6; an Le is tolerated and ignored).
        assert card.sw("00A4040C0AD392100031000101040800") == "9000"  # 券面事項入力補助AP
        assert card.sw("00A4040C0AD392100031000101040208") == "9000"  # 券面事項確認AP
        assert card.sw("00A4040C0AD392100031000101010000") == "6A82"  # not emulated
        assert card.sw("00A4040C07A0000000030000") == "6A82"
        assert card.sw(SELECT_AP) == "9000"

    def test_efs_need_the_ap(self, card: EmulatedCard) -> None:
        assert card.sw("00A4020C02000A") == "6A82"
        assert card.sw("00B0000004") == "6986"  # no current EF
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("00A4020C02000A") == "9000"

    @pytest.mark.parametrize("fid", ["0003", "0005", "3F00", "2F00", "FFFF"])
    def test_unknown_ef(self, card: EmulatedCard, fid: str) -> None:
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("00A4020C02" + fid) == "6A82"

    def test_parameters_and_lengths(self, card: EmulatedCard) -> None:
        assert card.sw("00A4040C") == "6700"  # no AID
        assert card.sw("00A404000AD392F000260100000001") == "6A86"  # P2 00 (FCI): not offered
        assert card.sw("00A4040007627601FF000000") == "6A82"  # unknown AID: 6A82 whatever P2
        assert card.sw("00A4040C11" + "00" * 17) == "6700"  # longer than any AID
        assert card.sw("00A4080C02000A") == "6A86"
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("00A4020C0300000A") == "6700"
        assert card.sw("00A4020C01" + "0A") == "6700"

    def test_mf_is_unreliable_as_on_the_real_card(self, card: EmulatedCard) -> None:
        # reference §4.1: 6A86 after reset, 90 00 without effect when a DF is current.
        assert card.sw("00A40000") == "6A86"
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("00A4020C020006") == "9000"
        assert card.sw("00A40000") == "9000"
        assert card.send("00B0000002")[:4] == b"JP".hex().upper()  # EF 0006 still current


class TestReadBinary:
    def test_token_info(self, card: EmulatedCard) -> None:
        card.client.select_jpki_ap()
        assert card.client.token_label() == "JPKIAPICCTOKEN2"
        card.client.select_ef(Ef.TOKEN_INFO)
        info = card.client.read_binary(0, 160)
        assert len(info) == 160
        assert info[:32] == b"JPKIAPICCTOKEN2".ljust(32)
        assert info[116:124] == bytes.fromhex("00000010 00000004")  # max / min PIN length

    def test_availability(self, card: EmulatedCard, blank_card: EmulatedCard) -> None:
        card.client.select_jpki_ap()
        assert card.client.availability().raw == bytes.fromhex("8F8F00")
        assert card.client.availability().sign and card.client.availability().auth
        blank_card.client.select_jpki_ap()
        assert blank_card.client.availability().raw == bytes(3)

    def test_certificates(self, card: EmulatedCard, personalisation: Personalisation) -> None:
        client = card.client
        client.select_jpki_ap()
        for slot in (CertSlot.AUTH, CertSlot.AUTH_CA, CertSlot.SIGN_CA):
            assert client.read_certificate(slot) == personalisation.certificates[slot]
        with pytest.raises(SecurityStatusNotSatisfied):
            client.read_certificate(CertSlot.SIGN)
        client.verify_pin(Pin.SIGN, SIGN_PASSWORD)
        assert client.read_certificate(CertSlot.SIGN) == personalisation.certificates[
            CertSlot.SIGN]

    def test_offsets_and_end_of_file(self, card: EmulatedCard) -> None:
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("00A4020C020008") == "9000"  # EF 0008: 3 bytes
        assert card.send("00B0000003") == "8F8F009000"
        assert card.send("00B0000102") == "8F009000"
        assert card.send("00B0000000") == "8F8F009000"  # Le 00: what is there
        assert card.sw("00B0000005") == "6C03"  # explicit Le too long: the exact length
        assert card.sw("00B0000301") == "6B00"  # at the end: outside the EF
        assert card.sw("00B07FFF01") == "6B00"
        assert card.sw("00B00000") == "6700"  # no Le
        assert card.sw("00B0000001AA00") == "6700"  # data in READ BINARY

    def test_6c_is_resent_by_the_transport(self, card: EmulatedCard) -> None:
        card.client.select_jpki_ap()
        card.client.select_ef(Ef.AVAILABILITY)
        assert card.client.read_binary(1, 200) == bytes.fromhex("8F00")

    def test_by_short_file_identifier(self, card: EmulatedCard,
                                      personalisation: Personalisation) -> None:
        # reference §4.4: ``00 B0 8A 00 00`` reads EF 000A by SFI, first 256 bytes.
        assert card.sw(SELECT_AP) == "9000"
        der = personalisation.certificates[CertSlot.AUTH].public_bytes(
            serialization.Encoding.DER)
        assert card.send("00B08A0000") == der[:256].hex().upper() + "9000"
        assert card.send("00B0000104") == der[1:5].hex().upper() + "9000"  # now current
        assert card.sw("00B0810000") == "6982"  # EF 0001 by SFI: still needs the password
        assert card.sw("00B0E10000") == "6A86"  # b7 b6 must be 0
        assert card.sw("00B0830000") == "6A82"  # SFI 3: no such EF

    def test_keys_and_pins_are_not_data(self, card: EmulatedCard) -> None:
        assert card.sw(SELECT_AP) == "9000"
        for fid in ("0017", "001A", "0018", "001B"):
            assert card.sw("00A4020C02" + fid) == "9000"
            assert card.sw("00B0000000") == "6981"

    def test_read_binary_all(self, card: EmulatedCard, blank_card: EmulatedCard,
                             personalisation: Personalisation) -> None:
        card.client.select_jpki_ap()
        der = card.client.read_binary_all(Ef.AUTH_CA_CERT)
        assert der == personalisation.certificates[CertSlot.AUTH_CA].public_bytes(
            serialization.Encoding.DER)
        blank_card.client.select_jpki_ap()
        assert blank_card.client.read_binary_all(Ef.AUTH_CERT) == b""
        with pytest.raises(CertificateAbsent):
            blank_card.client.read_certificate(CertSlot.AUTH)

    def test_android_token_protects_the_auth_certificate(self, tmp_path: object,
                                                         issuer_public_pem: bytes) -> None:
        # reference §4.3 / §2: on JPKIAPGPSETOKEN, EF 000A needs the auth PIN.
        from pathlib import Path

        path = Path(str(tmp_path)) / "phone.json"
        emulator = JpkiCardEmulator.create(path, issuer_public_pem, TOKEN_LABEL_ANDROID)
        client = JpkiCard(InProcessTransport(emulator))
        client.select_jpki_ap()
        assert client.token_label() == TOKEN_LABEL_ANDROID
        client.select_ef(Ef.AUTH_CERT)
        assert emulator.process(bytes.fromhex("00B0000004")).hex() == "6982"


class TestSigning:
    MESSAGE = b"docs/reference.md \xc2\xa74.4"

    def _verify(self, public: rsa.RSAPublicKey, scheme: SignScheme, data: bytes,
                signature: bytes) -> None:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        match scheme:
            case SignScheme.PKCS1_AS_GIVEN:
                assert public.recover_data_from_signature(signature, padding.PKCS1v15(),
                                                          None) == data
            case SignScheme.PKCS1_SHA256_BARE:
                assert public.recover_data_from_signature(
                    signature, padding.PKCS1v15(), None) == hashlib.sha256(data).digest()
            case SignScheme.PKCS1_PREHASHED_SHA256:
                public.verify(signature, data, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
            case SignScheme.PKCS1_SHA256:
                public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            case SignScheme.PSS_PREHASHED_SHA256:
                public.verify(signature, data, pss, Prehashed(hashes.SHA256()))
            case SignScheme.PSS_SHA256:
                public.verify(signature, data, pss, hashes.SHA256())

    def _input(self, scheme: SignScheme) -> bytes:
        digest = hashlib.sha256(self.MESSAGE).digest()
        if scheme is SignScheme.PKCS1_AS_GIVEN:
            return sha256_digest_info(digest)
        if scheme in (SignScheme.PKCS1_PREHASHED_SHA256, SignScheme.PSS_PREHASHED_SHA256):
            return digest
        return self.MESSAGE

    @pytest.mark.parametrize("scheme", list(SignScheme))
    @pytest.mark.parametrize("key", list(Key))
    def test_each_scheme_with_each_key(self, card: EmulatedCard, personalisation: Personalisation,
                                       scheme: SignScheme, key: Key) -> None:
        client = card.client
        client.select_jpki_ap()
        client.verify_pin(key.pin, AUTH_PIN if key is Key.AUTH else SIGN_PASSWORD)
        public = personalisation.auth_public if key is Key.AUTH else personalisation.sign_public
        data = self._input(scheme)
        for by_sfi in (False, True):
            signature = client.compute_signature(key, data, scheme, by_sfi=by_sfi)
            assert len(signature) == 256
            self._verify(public, scheme, data, signature)

    def test_classic_digest_info_matches_the_certificate(self, card: EmulatedCard,
                                                         personalisation: Personalisation) -> None:
        card.client.select_jpki_ap()
        card.client.verify_pin(Pin.AUTH, AUTH_PIN)
        digest_info = sha256_digest_info(hashlib.sha256(self.MESSAGE).digest())
        signature = card.client.sign(Key.AUTH, digest_info)
        certificate: x509.Certificate = personalisation.certificates[CertSlot.AUTH]
        public = certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, self.MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        with pytest.raises(InvalidSignature):
            personalisation.sign_public.verify(signature, self.MESSAGE, padding.PKCS1v15(),
                                               hashes.SHA256())

    def test_arbitrary_payload_for_p1_00(self, card: EmulatedCard,
                                         personalisation: Personalisation) -> None:
        # Not a DigestInfo: the generic PKCS#1 v1.5 path (e.g. an MD5+SHA-1 TLS 1.0 blob).
        card.client.select_jpki_ap()
        card.client.verify_pin(Pin.AUTH, AUTH_PIN)
        for payload in (b"\x01", bytes(range(36)), b"\xff" * 245):
            signature = card.client.compute_signature(Key.AUTH, payload,
                                                      SignScheme.PKCS1_AS_GIVEN)
            self._verify(personalisation.auth_public, SignScheme.PKCS1_AS_GIVEN, payload,
                         signature)

    def test_refusals(self, card: EmulatedCard) -> None:
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("00A4020C020017") == "9000"
        assert card.sw("802A00800401020304" "00") == "6982"  # no VERIFY
        assert card.sw("00A4020C020018") == "9000"
        assert card.sw("0020008004" + AUTH_PIN.encode().hex()) == "9000"
        assert card.sw("802A00800401020304" "00") == "6981"  # current EF is the PIN, not a key
        assert card.sw("00A4020C020017") == "9000"
        assert card.sw("802A06800401020304" "00") == "6A86"  # scheme 06
        assert card.sw("802AFF800401020304" "00") == "6A86"
        assert card.sw("802A00810401020304" "00") == "6A86"  # P2 81
        assert card.sw("802A00980401020304" "00") == "6A86"  # P2 98 (a PIN's SFI)
        assert card.sw("802A0080" "00") == "6700"  # no data
        assert card.sw("802A0280" "04" "01020304" "00") == "6700"  # scheme 02 takes 32 bytes
        assert card.sw("802A0480" "21" + "00" * 33 + "00") == "6700"
        assert card.sw("802A0080" "F6" + "00" * 246 + "00") == "6700"  # > 245 for scheme 00
        assert card.sw("802A009A0401020304" "00") == "6982"  # the sign key needs its password
        assert card.sw("002A00800401020304" "00") == "6D00"  # CLA 00: not this card's command

    def test_response_without_le_is_chained(self, card: EmulatedCard) -> None:
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("0020009804" + AUTH_PIN.encode().hex()) == "9000"
        first = card.send("802A00970401020304")  # case 3: no Le
        assert first == "6100"  # 256 bytes wait
        assert card.sw("00C0000000") == "9000"
        assert card.sw("00C0000000") == "6985"  # nothing pending any more


class TestIssuerCommands:
    def _issuance(self) -> list[str]:
        return [
            "0047000006B6048402001700",  # GENERATE for 0017
            "00D60000038F8F00",  # UPDATE BINARY (EF 0008 selected below)
            "002C029804" + b"1234".hex(),  # RESET RETRY COUNTER with a new PIN
            "002C0398",  # RESET RETRY COUNTER, counter only
        ]

    def test_refused_before_external_authenticate(self, card: EmulatedCard) -> None:
        before = card.path.read_bytes()
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("00A4020C020008") == "9000"
        for apdu in self._issuance():
            assert card.sw(apdu) == "6982", apdu
        assert card.path.read_bytes() == before

    def test_accepted_after(self, card: EmulatedCard, issuer_key: rsa.RSAPrivateKey) -> None:
        card.client.select_jpki_ap()
        card.client.authenticate_issuer(issuer_key)
        card.client.select_ef(Ef.AVAILABILITY)
        answers = [card.send(apdu) for apdu in self._issuance()]
        assert answers[0][-4:] == "610E"  # 270 bytes for Le 00: 256 now, 14 by GET RESPONSE
        assert [a[-4:] for a in answers[1:]] == ["9000"] * 3

    def test_survive_only_the_card_session(self, card: EmulatedCard,
                                           issuer_key: rsa.RSAPrivateKey) -> None:
        card.client.select_jpki_ap()
        card.client.authenticate_issuer(issuer_key)
        card.client.set_availability(sign=False, auth=True)
        card.emulator.reset()  # power cycle
        card.client.select_jpki_ap()
        assert card.client.availability().raw == bytes.fromhex("008F00")
        with pytest.raises(SecurityStatusNotSatisfied):
            card.client.set_availability(sign=True, auth=True)
        # And never across a restart: the flag is not in the state file.
        card.client.authenticate_issuer(issuer_key)
        again = card.reopen()
        again.client.select_jpki_ap()
        with pytest.raises(SecurityStatusNotSatisfied):
            again.client.set_availability(sign=True, auth=True)

    def test_challenge_is_single_use(self, card: EmulatedCard,
                                     issuer_key: rsa.RSAPrivateKey) -> None:
        card.client.select_jpki_ap()
        challenge = card.client.get_challenge(32)
        response = issuer_key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
        card.client.external_authenticate(response)
        card.emulator.reset()
        card.client.select_jpki_ap()
        # Replaying the old response: first with no challenge, then against a new one.
        assert card.sw("00820000000100" + response.hex()) == "6985"
        card.client.get_challenge(32)
        with pytest.raises(IssuerAuthenticationFailed):
            card.client.external_authenticate(response)
        assert card.sw("00D60000038F8F00") in ("6982", "6986")

    def test_challenge_expires_after_any_other_command(self, card: EmulatedCard,
                                                       issuer_key: rsa.RSAPrivateKey) -> None:
        card.client.select_jpki_ap()
        challenge = card.client.get_challenge(32)
        card.client.select_jpki_ap()
        response = issuer_key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
        assert card.sw("00820000000100" + response.hex()) == "6985"

    def test_wrong_key_and_short_challenges(self, card: EmulatedCard) -> None:
        impostor = rsa.generate_private_key(65537, 2048)
        card.client.select_jpki_ap()
        with pytest.raises(IssuerAuthenticationFailed):
            card.client.authenticate_issuer(impostor)
        challenge = card.client.get_challenge(8)  # too short to authenticate with
        signature = impostor.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
        assert card.sw("00820000000100" + signature.hex()) == "6985"

    def test_parameters(self, card: EmulatedCard, issuer_key: rsa.RSAPrivateKey) -> None:
        assert card.sw("0084000000") == "9000"  # Le 00: 256 bytes
        assert card.sw("00840100" "08") == "6A86"
        assert card.sw("00840000") == "6700"
        assert card.sw("00840000000101") == "6700"  # more than 256
        assert card.sw("00820100" "01" "00") == "6A86"
        card.client.select_jpki_ap()
        card.client.authenticate_issuer(issuer_key)
        assert card.sw("0047000006B6048402001800") == "6A80"  # 0018 is a PIN, not a key
        assert card.sw("0047000004B602830100") == "6A80"  # not the template
        assert card.sw("0047010006B6048402001700") == "6A86"
        assert card.sw("00470000") == "6700"
        assert card.sw("002C0198") == "6A86"
        assert card.sw("002C029803313233") == "6A80"  # a 3-digit auth PIN
        assert card.sw("002C0298") == "6700"
        assert card.sw("00D6000000") == "6700"  # UPDATE BINARY without data...
        assert card.sw("00D60000018F") == "6986"  # ...or without a current EF

    def test_generate_and_write(self, blank_card: EmulatedCard, issuer_key: rsa.RSAPrivateKey,
                                ) -> None:
        client = blank_card.client
        client.select_jpki_ap()
        client.authenticate_issuer(issuer_key)
        public = client.generate_key_pair(Key.AUTH)
        assert public.key_size == 2048 and public.public_numbers().e == 65537
        assert client.read_public_key(Key.AUTH).public_numbers() == public.public_numbers()
        assert blank_card.sw("0047810006B6048402001A00") == "6A88"  # no sign key yet
        data = bytes(range(256)) * 3 + b"\x30\x03\x02\x01\x05"
        client.write_file(Ef.AUTH_CA_CERT, data)
        client.select_ef(Ef.AUTH_CA_CERT)
        assert b"".join(client.read_binary(o, min(256, len(data) - o))
                        for o in range(0, len(data), 256)) == data
        client.write_file(Ef.AUTH_CA_CERT, b"\x30\x00")  # shorter contents replace longer
        assert client.read_binary_all(Ef.AUTH_CA_CERT) == b"\x30\x00"
        assert blank_card.sw("00D6000301AA") == "6B00"  # a hole
        assert blank_card.sw("00D60FFF02AABB") == "6B00"
        blank_card.sw("00A4020C020008")
        assert blank_card.sw("00D6000004" "8F8F0000") == "6A84"  # EF 0008 holds 3 bytes
        assert blank_card.sw("00A4020C020017") == "9000"
        assert blank_card.sw("00D60000018F") == "6981"  # a key EF is not data

    def test_key_never_leaves_the_card(self, card: EmulatedCard) -> None:
        pem = card.emulator.state.keys[Key.AUTH]
        key = serialization.load_pem_private_key(pem, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        secret = key.private_numbers().d.to_bytes(256, "big")
        card.client.select_jpki_ap()
        card.client.verify_pin(Pin.AUTH, AUTH_PIN)
        for fid in ("0017", "001A"):
            assert card.sw("00A4020C02" + fid) == "9000"
            for apdu in ("00B0000000", "00B0000100", "00CA5F5100", "00880000020102" "00"):
                assert secret[:16].hex().upper() not in card.send(apdu)


class TestOtherCommands:
    def test_status_words(self, card: EmulatedCard) -> None:
        assert card.sw("80FC0000") == "6700"  # iPhone last command indicator (§2)
        assert card.sw("00FF0000") == "6D00"
        assert card.sw("80A4040C0AD392F000260100000001") == "6D00"
        for cla in ("01", "04", "0C", "10", "84", "A0", "C0", "FF"):
            assert card.sw(cla + "A4040C0AD392F000260100000001") == "6E00"
        assert card.sw("00A404") == "6700"
        assert card.sw("00CA5F5100") == "9000"
        assert card.send("00CA5F5100") == "E000FF8131FE45149000"  # ATR without TS (§4.1)
        assert card.sw("00CA9F7F00") == "6A88"
        assert card.sw("00880000020102" "00") == "6982"  # INTERNAL AUTHENTICATE (§4.4 note)

    def test_get_response_without_pending_data(self, card: EmulatedCard) -> None:
        assert card.sw("00C0000010") == "6985"


def test_select_file_errors_are_typed(card: EmulatedCard) -> None:
    with pytest.raises(CardFileNotFound):
        card.client.select_ef(Ef.AUTH_CERT)  # AP not selected
