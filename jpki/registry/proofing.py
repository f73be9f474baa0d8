"""Identity proofing at the counter: which documents and measures satisfy which pattern.

The rules are the table 「マイナンバーカード交付時の本人確認書類等」 (revised 2020-12-28) of
the Ministry's deck on the My Number Card (reference §5, §9). The counter applies them when it hands
over a card and its certificates, renews them or resets a PIN (§5: only at the window, with
strict identity verification).

Documents come in two classes: 本人確認書類 甲 (※1: photo identity documents issued by public
bodies) and 乙 (※2: everything else on the list, some with a photo). A resident who comes in
person satisfies one of the patterns A–E; a proxy (代理人) may receive for the applicant only under
A–C, showing their own documents as for the pattern ("同左") *and* the applicant's, with a letter
of delegation (委任状; the 交付通知書 doubles as one) and a document showing why the applicant
cannot come (疎明資料). Since the 2020 revision, a photo certified by the head of the hospital or
facility the applicant lives in, or — for an applicant under 15 — by the legal guardian, counts as
a photo document of class 乙.

What is stored is the evidence's *shape* — document types, measures, the pattern — never document
numbers or any personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from jpki.errors import InvalidInput, PolicyViolation
from jpki.validity import add_months


class ProofingInsufficient(PolicyViolation):
    code = "proofing.insufficient"
    title = "The recorded documents do not satisfy any identity-proofing pattern"


class DocumentClass(StrEnum):
    KOU = "kou"  # 本人確認書類 甲
    OTSU = "otsu"  # 本人確認書類 乙
    OTHER = "other"  # 照会回答書, receipts: neither class


class DocumentType(StrEnum):
    # ※1 本人確認書類 甲
    MY_NUMBER_CARD = "my_number_card"  # 個人番号カード
    JUKI_CARD = "juki_card"  # 住民基本台帳カード
    DRIVERS_LICENSE = "drivers_license"  # 運転免許証
    DRIVING_RECORD_CERTIFICATE = "driving_record_certificate"  # 運転経歴証明書 (from 2012-04-01)
    PASSPORT = "passport"  # 旅券
    PHYSICAL_DISABILITY_BOOK = "physical_disability_book"  # 身体障害者手帳
    MENTAL_DISABILITY_BOOK = "mental_disability_book"  # 精神障害者保健福祉手帳
    REHABILITATION_BOOK = "rehabilitation_book"  # 療育手帳
    RESIDENCE_CARD = "residence_card"  # 在留カード
    SPECIAL_PERMANENT_RESIDENT_CERTIFICATE = "special_permanent_resident_certificate"
    TEMPORARY_REFUGE_PERMIT = "temporary_refuge_permit"  # 一時庇護許可書 / 仮滞在許可書
    # ※2 本人確認書類 乙 (examples in the table; the list is open in practice)
    QUALIFICATION_CERTIFICATE = "qualification_certificate"  # 各種資格証
    SEAMAN_BOOK = "seaman_book"  # 船員手帳, 戦傷病者手帳
    GOVERNMENT_STAFF_ID = "government_staff_id"  # 官公署が発行した身分証明書
    SENIOR_CITIZEN_BOOK = "senior_citizen_book"  # 敬老手帳
    WELFARE_RECIPIENT_CERTIFICATE = "welfare_recipient_certificate"  # 生活保護受給者証
    HEALTH_INSURANCE_CARD = "health_insurance_card"  # 健康保険・介護保険の被保険者証
    MEDICAL_RECIPIENT_CERTIFICATE = "medical_recipient_certificate"  # 医療受給者証
    PENSION_CERTIFICATE = "pension_certificate"  # 各種年金証書
    CHILD_ALLOWANCE_CERTIFICATE = "child_allowance_certificate"  # (特別)児童扶養手当証書
    MATERNAL_HANDBOOK = "maternal_handbook"  # 母子健康手帳
    CHILD_MEDICAL_CERTIFICATE = "child_medical_certificate"  # 子ども医療費受給者証
    BANK_PASSBOOK = "bank_passbook"  # 住民名義の預金通帳
    EMPLOYEE_ID = "employee_id"  # 民間企業の社員証
    STUDENT_ID = "student_id"  # 学生証
    SCHOOL_DOCUMENT = "school_document"  # 学校名が記載された各種書類
    FACILITY_PHOTO_CERTIFICATE = "facility_photo_certificate"  # 病院長又は施設長の顔写真証明
    GUARDIAN_PHOTO_CERTIFICATE = "guardian_photo_certificate"  # 法定代理人の顔写真証明 (<15)
    # neither class
    INQUIRY_REPLY = "inquiry_reply"  # 照会回答書 (交付通知書)
    RECEIPT = "receipt"  # ※3 tax, social-insurance or utility receipt (※4: within 3 months)


_KOU = {
    DocumentType.MY_NUMBER_CARD, DocumentType.JUKI_CARD, DocumentType.DRIVERS_LICENSE,
    DocumentType.DRIVING_RECORD_CERTIFICATE, DocumentType.PASSPORT,
    DocumentType.PHYSICAL_DISABILITY_BOOK, DocumentType.MENTAL_DISABILITY_BOOK,
    DocumentType.REHABILITATION_BOOK, DocumentType.RESIDENCE_CARD,
    DocumentType.SPECIAL_PERMANENT_RESIDENT_CERTIFICATE, DocumentType.TEMPORARY_REFUGE_PERMIT,
}
_OTHER = {DocumentType.INQUIRY_REPLY, DocumentType.RECEIPT}
# Photo certificates: 乙 with a photo by what they are (the 2020 revision).
ALWAYS_PHOTO = frozenset({DocumentType.FACILITY_PHOTO_CERTIFICATE,
                          DocumentType.GUARDIAN_PHOTO_CERTIFICATE})
# ※1: 運転経歴証明書 counts only if issued on or after 2012-04-01.
_DRIVING_RECORD_SINCE = date(2012, 4, 1)


def document_class(kind: DocumentType) -> DocumentClass:
    if kind in _KOU:
        return DocumentClass.KOU
    if kind in _OTHER:
        return DocumentClass.OTHER
    return DocumentClass.OTSU


class Measure(StrEnum):
    """Pattern A's second measure (暗証番号の入力、ICチップの中身の確認又は住基情報に基づく聴聞),
    and pattern E's hearing."""

    PIN_ENTRY = "pin_entry"
    IC_CHIP_CHECK = "ic_chip_check"
    REGISTRY_HEARING = "registry_hearing"


class Presence(StrEnum):
    IN_PERSON = "in_person"  # 交付申請者本人が出頭
    PROXY = "proxy"  # 代理人に対する交付


class Pattern(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


@dataclass(frozen=True)
class Document:
    kind: DocumentType
    has_photo: bool = False  # for class 乙: whether it carries the holder's photo
    issued_on: date | None = None  # receipts (within 3 months), 運転経歴証明書


@dataclass(frozen=True)
class Evidence:
    presence: Presence
    applicant_documents: tuple[Document, ...]
    measures: frozenset[Measure] = frozenset()
    proxy_documents: tuple[Document, ...] = ()
    proxy_measures: frozenset[Measure] = frozenset()
    delegation_letter: bool = False  # 委任状 (the 交付通知書 doubles as one)
    hardship_proof: bool = False  # 交付申請者の出頭が困難であることを疎明する資料
    applicant_in_facility: bool = False  # 施設入所者


class NotCounted(StrEnum):
    """Why a document shown was not counted: each a rule of the table (its note's number)."""

    DRIVING_RECORD_BEFORE_2012 = "driving_record_before_2012"  # ※1
    NOT_IN_FACILITY = "not_in_facility"
    NOT_UNDER_15 = "not_under_15"
    RECEIPT_NOT_RECENT = "receipt_not_recent"  # ※4
    KOU_REPEATED = "kou_repeated"


_NOT_COUNTED_TEXT = {
    NotCounted.DRIVING_RECORD_BEFORE_2012: "only those issued from 2012-04-01 count (※1)",
    NotCounted.NOT_IN_FACILITY: "only for an applicant living in the facility",
    NotCounted.NOT_UNDER_15: "only for an applicant under 15",
    NotCounted.RECEIPT_NOT_RECENT: "must be dated within the last 3 months (※4)",
    NotCounted.KOU_REPEATED: "a 甲 document counts once",
}


class Missing(StrEnum):
    """What a proxy pick-up lacks besides the documents."""

    DELEGATION_LETTER = "delegation_letter"
    HARDSHIP_PROOF = "hardship_proof"


_MISSING_TEXT = {
    Missing.DELEGATION_LETTER: "a letter of delegation (委任状)",
    Missing.HARDSHIP_PROOF: "proof that the applicant cannot come (疎明資料)",
}


@dataclass
class Tally:
    """What one person's documents count for under the table; ``not_counted`` names each
    document the rules refused, and why (a type and a rule, nothing personal)."""

    kou: int = 0
    otsu: int = 0
    otsu_photo: int = 0
    inquiry_reply: int = 0
    receipts: int = 0
    not_counted: list[tuple[DocumentType, NotCounted]] = field(default_factory=list)


def _count(documents: Iterable[Document], *, today: date, age: int,
           in_facility: bool) -> Tally:
    c = Tally()
    kou_seen: set[DocumentType] = set()
    for doc in documents:
        kind = doc.kind
        if kind is DocumentType.DRIVING_RECORD_CERTIFICATE and (
                doc.issued_on is None or doc.issued_on < _DRIVING_RECORD_SINCE):
            c.not_counted.append((kind, NotCounted.DRIVING_RECORD_BEFORE_2012))
            continue
        if kind is DocumentType.FACILITY_PHOTO_CERTIFICATE and not in_facility:
            c.not_counted.append((kind, NotCounted.NOT_IN_FACILITY))
            continue
        if kind is DocumentType.GUARDIAN_PHOTO_CERTIFICATE and age >= 15:
            c.not_counted.append((kind, NotCounted.NOT_UNDER_15))
            continue
        if kind is DocumentType.RECEIPT:
            # ※4: dated within 3 months before the day of the proofing.
            if doc.issued_on is None or doc.issued_on > today or \
                    doc.issued_on < add_months(today, -3):
                c.not_counted.append((kind, NotCounted.RECEIPT_NOT_RECENT))
                continue
            c.receipts += 1
            continue
        if kind is DocumentType.INQUIRY_REPLY:
            c.inquiry_reply += 1
            continue
        if document_class(kind) is DocumentClass.KOU:
            # "甲 2点" are two documents. The record keeps types only, and nobody holds two
            # documents of one 甲 type (two licences, two passports): a repeat is one document
            # entered twice. (乙 types repeat legitimately: two 資格証, two passbooks.)
            if kind in kou_seen:
                c.not_counted.append((kind, NotCounted.KOU_REPEATED))
                continue
            kou_seen.add(kind)
            c.kou += 1
        else:
            c.otsu += 1
            if doc.has_photo or kind in ALWAYS_PHOTO:
                c.otsu_photo += 1
    return c


def _in_person_pattern(c: Tally, measures: frozenset[Measure]) -> Pattern | None:
    a_measure = bool(measures & {Measure.PIN_ENTRY, Measure.IC_CHIP_CHECK,
                                 Measure.REGISTRY_HEARING})
    if c.kou >= 1 and a_measure:
        return Pattern.A
    if c.kou >= 2:
        return Pattern.B
    if c.kou >= 1 and c.otsu >= 1:
        return Pattern.C
    if c.inquiry_reply and (c.kou >= 1 or c.otsu >= 2):
        return Pattern.D
    if c.inquiry_reply and Measure.REGISTRY_HEARING in measures and c.otsu >= 1 and c.receipts:
        return Pattern.E
    return None


def _proxy_applicant_ok(pattern: Pattern, c: Tally) -> bool:
    if pattern is Pattern.A:
        # 2 or more, at least one 甲, the others 甲 or 乙 with a photo.
        return c.kou >= 1 and c.kou + c.otsu_photo >= 2
    if pattern is Pattern.B:
        return c.kou >= 1 and c.otsu >= 1
    if pattern is Pattern.C:
        # 乙 with a photo, and two 乙 besides it.
        return c.otsu_photo >= 1 and c.otsu >= 3
    return False


@dataclass(frozen=True)
class Assessment:
    """The table's verdict on the evidence, whole: the pattern met (None: refused), what each
    person's documents counted for, and what a proxy pick-up still lacks. :func:`evaluate`
    records from it; the operator console shows it to guide the clerk (api.console.counter)."""

    presence: Presence
    pattern: Pattern | None
    applicant: Tally
    proxy: Tally | None = None
    # A proxy pick-up whose documents meet this pattern but lacks ``missing``.
    documents_meet: Pattern | None = None
    missing: tuple[Missing, ...] = ()

    def refusal(self) -> str:
        """Why it is refused, in the words of the table; never anything personal."""
        if self.presence is Presence.IN_PERSON:
            return _explain(self.applicant, "the applicant's documents satisfy none of "
                            "patterns A–E")
        if self.documents_meet is not None:
            return "a proxy pick-up needs " + " and ".join(_MISSING_TEXT[m]
                                                            for m in self.missing)
        return _explain(self.applicant, "the proxy's and the applicant's documents satisfy "
                        "none of patterns A–C for a proxy pick-up")


def assess(evidence: Evidence, *, applicant_age: int, today: date) -> Assessment:
    """The verdict on ``evidence`` for an applicant of ``applicant_age`` on ``today``; raises
    only for evidence that is not well formed (proxy documents without a proxy)."""
    applicant = _count(evidence.applicant_documents, today=today, age=applicant_age,
                       in_facility=evidence.applicant_in_facility)
    if evidence.presence is Presence.IN_PERSON:
        if evidence.proxy_documents:
            raise InvalidInput("proxy documents belong to a proxy pick-up", field="presence")
        return Assessment(evidence.presence, _in_person_pattern(applicant, evidence.measures),
                          applicant)
    missing = tuple(m for m, present in ((Missing.DELEGATION_LETTER, evidence.delegation_letter),
                                         (Missing.HARDSHIP_PROOF, evidence.hardship_proof))
                    if not present)
    proxy = _count(evidence.proxy_documents, today=today, age=99, in_facility=False)
    for pattern in (Pattern.A, Pattern.B, Pattern.C):
        # "同左": the proxy shows what an applicant in person would for this pattern.
        if _meets(pattern, proxy, evidence.proxy_measures) and \
                _proxy_applicant_ok(pattern, applicant):
            return Assessment(evidence.presence, None if missing else pattern, applicant,
                              proxy, documents_meet=pattern, missing=missing)
    return Assessment(evidence.presence, None, applicant, proxy, missing=missing)


def evaluate(evidence: Evidence, *, applicant_age: int, today: date) -> Pattern:
    """The pattern the evidence satisfies; ProofingInsufficient (saying what is missing, never
    anything personal) if none."""
    verdict = assess(evidence, applicant_age=applicant_age, today=today)
    if verdict.pattern is None:
        raise ProofingInsufficient(verdict.refusal())
    return verdict.pattern


def _meets(pattern: Pattern, c: Tally, measures: frozenset[Measure]) -> bool:
    if pattern is Pattern.A:
        return c.kou >= 1 and bool(measures & {Measure.PIN_ENTRY, Measure.IC_CHIP_CHECK,
                                               Measure.REGISTRY_HEARING})
    if pattern is Pattern.B:
        return c.kou >= 2
    return c.kou >= 1 and c.otsu >= 1


def _explain(c: Tally, summary: str) -> str:
    parts = [summary, f"(counted: 甲 {c.kou}, 乙 {c.otsu} of which {c.otsu_photo} with a photo, "
             f"照会回答書 {c.inquiry_reply}, receipts {c.receipts})"]
    if c.not_counted:
        parts.append("not counted: " + "; ".join(f"{kind.value}: {_NOT_COUNTED_TEXT[why]}"
                                                 for kind, why in c.not_counted))
    return " ".join(parts)
