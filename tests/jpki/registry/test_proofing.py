"""jpki.registry.proofing: the table of reference §5, 「マイナンバーカード交付時の本人確認書類等」
(2020-12-28).

Pure rules, no database. Each pattern is accepted with its minimal documents and refused with any
one of them taken away; the proxy patterns need the proxy's own documents ("同左"), the applicant's,
a 委任状 and a 疎明資料; the 2020 photo certificates, receipts (※3/※4) and 運転経歴証明書 (※1)
count only under their conditions.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from itertools import permutations

import pytest

from jpki.errors import InvalidInput, PolicyViolation
from jpki.registry.proofing import (
    Document,
    DocumentClass,
    DocumentType,
    Evidence,
    Measure,
    Missing,
    NotCounted,
    Pattern,
    Presence,
    ProofingInsufficient,
    assess,
    document_class,
    evaluate,
)

TODAY = date(2026, 11, 27)
ADULT_AGE = 36

T = DocumentType
# 甲 (※1)
LICENSE = Document(T.DRIVERS_LICENSE)
PASSPORT = Document(T.PASSPORT)
MY_NUMBER = Document(T.MY_NUMBER_CARD)
# 乙 (※2)
INSURANCE = Document(T.HEALTH_INSURANCE_CARD)
PENSION = Document(T.PENSION_CERTIFICATE)
PASSBOOK = Document(T.BANK_PASSBOOK)
STAFF_ID_PHOTO = Document(T.EMPLOYEE_ID, has_photo=True)
STUDENT_ID_PHOTO = Document(T.STUDENT_ID, has_photo=True)
FACILITY_PHOTO = Document(T.FACILITY_PHOTO_CERTIFICATE)  # has_photo left False on purpose
GUARDIAN_PHOTO = Document(T.GUARDIAN_PHOTO_CERTIFICATE)
# neither
INQUIRY = Document(T.INQUIRY_REPLY)
RECEIPT = Document(T.RECEIPT, issued_on=date(2026, 10, 1))


def in_person(*documents: Document, measures: tuple[Measure, ...] = ()) -> Evidence:
    return Evidence(presence=Presence.IN_PERSON, applicant_documents=documents,
                    measures=frozenset(measures))


def proxy(applicant: tuple[Document, ...], own: tuple[Document, ...],
          own_measures: tuple[Measure, ...] = (), *, letter: bool = True,
          hardship: bool = True, in_facility: bool = False) -> Evidence:
    return Evidence(presence=Presence.PROXY, applicant_documents=applicant,
                    proxy_documents=own, proxy_measures=frozenset(own_measures),
                    delegation_letter=letter, hardship_proof=hardship,
                    applicant_in_facility=in_facility)


def judge(evidence: Evidence, age: int = ADULT_AGE) -> Pattern:
    return evaluate(evidence, applicant_age=age, today=TODAY)


def refused(evidence: Evidence, age: int = ADULT_AGE) -> str:
    """The detail of the ProofingInsufficient the evidence gets."""
    with pytest.raises(ProofingInsufficient) as caught:
        judge(evidence, age)
    assert caught.value.code == "proofing.insufficient"
    return caught.value.detail


def one_short(evidence: Evidence) -> list[tuple[str, Evidence]]:
    """Every evidence with exactly one document or measure of the minimal set taken away."""
    out = []
    for attr in ("applicant_documents", "proxy_documents"):
        docs: tuple[Document, ...] = getattr(evidence, attr)
        for i, doc in enumerate(docs):
            out.append((f"{attr} without {doc.kind.value}",
                        replace(evidence, **{attr: docs[:i] + docs[i + 1:]})))
    for attr in ("measures", "proxy_measures"):
        measures: frozenset[Measure] = getattr(evidence, attr)
        for m in measures:
            out.append((f"{attr} without {m.value}",
                        replace(evidence, **{attr: measures - {m}})))
    return out


# --- document classes (※1, ※2) ------------------------------------------------------------------


def test_document_classes_follow_the_table() -> None:
    kou = {T.MY_NUMBER_CARD, T.JUKI_CARD, T.DRIVERS_LICENSE, T.DRIVING_RECORD_CERTIFICATE,
           T.PASSPORT, T.PHYSICAL_DISABILITY_BOOK, T.MENTAL_DISABILITY_BOOK,
           T.REHABILITATION_BOOK, T.RESIDENCE_CARD, T.SPECIAL_PERMANENT_RESIDENT_CERTIFICATE,
           T.TEMPORARY_REFUGE_PERMIT}
    other = {T.INQUIRY_REPLY, T.RECEIPT}
    for kind in DocumentType:
        expected = (DocumentClass.KOU if kind in kou else
                    DocumentClass.OTHER if kind in other else DocumentClass.OTSU)
        assert document_class(kind) is expected, kind
    # The 2020 photo certificates are 乙 (※2), not 甲.
    assert document_class(T.FACILITY_PHOTO_CERTIFICATE) is DocumentClass.OTSU
    assert document_class(T.GUARDIAN_PHOTO_CERTIFICATE) is DocumentClass.OTSU


# --- in person: A–E ------------------------------------------------------------------------------

IN_PERSON_MINIMAL = {
    # A: ① 甲 ② 暗証番号の入力、ICチップの中身の確認又は住基情報に基づく聴聞 (each of the three)
    "A pin entry": (in_person(LICENSE, measures=(Measure.PIN_ENTRY,)), Pattern.A),
    "A ic chip": (in_person(MY_NUMBER, measures=(Measure.IC_CHIP_CHECK,)), Pattern.A),
    "A hearing": (in_person(PASSPORT, measures=(Measure.REGISTRY_HEARING,)), Pattern.A),
    # B: 甲 2点
    "B": (in_person(LICENSE, PASSPORT), Pattern.B),
    # C: ① 甲 ② 乙
    "C": (in_person(LICENSE, INSURANCE), Pattern.C),
    # D: ① 照会回答書 and ② 甲 ...
    "D with 甲": (in_person(INQUIRY, LICENSE), Pattern.D),
    # ... or ③ 乙 2点
    "D with two 乙": (in_person(INQUIRY, INSURANCE, PENSION), Pattern.D),
    # E: ① 照会回答書 ② 住基情報に基づく聴聞 ③ 乙 ④ 領収証書 (within 3 months)
    "E": (in_person(INQUIRY, INSURANCE, RECEIPT, measures=(Measure.REGISTRY_HEARING,)),
          Pattern.E),
}


@pytest.mark.parametrize("name", IN_PERSON_MINIMAL)
def test_in_person_pattern_accepted_with_its_minimal_documents(name: str) -> None:
    evidence, pattern = IN_PERSON_MINIMAL[name]
    assert judge(evidence) is pattern


@pytest.mark.parametrize("name", IN_PERSON_MINIMAL)
def test_in_person_pattern_refused_one_item_short(name: str) -> None:
    evidence, _ = IN_PERSON_MINIMAL[name]
    shorter = one_short(evidence)
    assert len(shorter) == len(evidence.applicant_documents) + len(evidence.measures)
    for what, less in shorter:
        detail = refused(less)
        assert "none of patterns A–E" in detail, what


def test_pattern_e_hearing_must_be_the_registry_hearing() -> None:
    # A PIN entry or a chip check is pattern A's measure, not E's 聴聞.
    for measure in (Measure.PIN_ENTRY, Measure.IC_CHIP_CHECK):
        refused(in_person(INQUIRY, INSURANCE, RECEIPT, measures=(measure,)))


def test_a_measure_without_a_kou_document_is_not_pattern_a() -> None:
    refused(in_person(INSURANCE, PENSION, measures=tuple(Measure)))


def test_an_empty_proofing_is_refused_with_zero_counts() -> None:
    detail = refused(in_person())
    assert "甲 0, 乙 0 of which 0 with a photo, 照会回答書 0, receipts 0" in detail


def test_the_refusal_names_the_counts() -> None:
    detail = refused(in_person(LICENSE))
    assert "甲 1, 乙 0 of which 0 with a photo" in detail


# --- in person: what counts under conditions ----------------------------------------------------


@pytest.mark.parametrize(("issued", "counts"), [
    (date(2012, 4, 1), True),  # ※1: 交付年月日が平成24年4月1日以降
    (date(2020, 6, 15), True),
    (date(2012, 3, 31), False),
    (None, False),  # no date shown: cannot be told apart from an old one
])
def test_driving_record_certificate_counts_only_from_2012_04_01(issued: date | None,
                                                                counts: bool) -> None:
    record = Document(T.DRIVING_RECORD_CERTIFICATE, issued_on=issued)
    evidence = in_person(record, PASSPORT)
    if counts:
        assert judge(evidence) is Pattern.B
    else:
        detail = refused(evidence)
        assert "driving_record_certificate: only those issued from 2012-04-01 count" in detail
        assert "甲 1" in detail
        if issued is not None:
            assert issued.isoformat() not in detail  # the rule, not the document's date


@pytest.mark.parametrize(("issued", "counts"), [
    (TODAY, True),
    (date(2026, 8, 27), True),  # exactly 3 months before the proofing day (※4: 前3月以内)
    (date(2026, 8, 26), False),
    (date(2026, 11, 28), False),  # dated after the proofing day
    (None, False),  # ※4: 領収日付の押印又は発行年月日の記載があるもの
])
def test_receipts_count_only_within_3_months(issued: date | None, counts: bool) -> None:
    receipt = Document(T.RECEIPT, issued_on=issued)
    evidence = in_person(INQUIRY, INSURANCE, receipt, measures=(Measure.REGISTRY_HEARING,))
    if counts:
        assert judge(evidence) is Pattern.E
    else:
        detail = refused(evidence)
        assert "receipt: must be dated within the last 3 months" in detail
        assert "receipts 0" in detail
        if issued is not None:
            assert issued.isoformat() not in detail


def test_receipt_three_months_clamps_to_the_end_of_a_short_month() -> None:
    # 3 months before 31 May is the end of February.
    day = date(2027, 5, 31)
    evidence = in_person(INQUIRY, INSURANCE, Document(T.RECEIPT, issued_on=date(2027, 2, 28)),
                         measures=(Measure.REGISTRY_HEARING,))
    assert evaluate(evidence, applicant_age=ADULT_AGE, today=day) is Pattern.E
    older = replace(evidence, applicant_documents=(
        INQUIRY, INSURANCE, Document(T.RECEIPT, issued_on=date(2027, 2, 27))))
    with pytest.raises(ProofingInsufficient):
        evaluate(older, applicant_age=ADULT_AGE, today=day)


def test_a_receipt_is_not_a_kou_or_otsu_document() -> None:
    # ※3 receipts only serve pattern E: never as the 乙 of C or the two 乙 of D.
    refused(in_person(LICENSE, RECEIPT))
    refused(in_person(INQUIRY, INSURANCE, RECEIPT))
    # ... nor is the 照会回答書 the 乙 of C: with a 甲 it makes D.
    assert judge(in_person(LICENSE, INQUIRY)) is Pattern.D


def test_facility_photo_certificate_is_otsu_only_for_an_applicant_in_a_facility() -> None:
    ok = replace(in_person(LICENSE, FACILITY_PHOTO), applicant_in_facility=True)
    assert judge(ok) is Pattern.C
    detail = refused(in_person(LICENSE, FACILITY_PHOTO))
    assert "facility_photo_certificate: only for an applicant living in the facility" in detail


@pytest.mark.parametrize(("age", "counts"), [(0, True), (14, True), (15, False), (40, False)])
def test_guardian_photo_certificate_is_otsu_only_under_15(age: int, counts: bool) -> None:
    evidence = in_person(PASSPORT, GUARDIAN_PHOTO)
    if counts:
        assert judge(evidence, age) is Pattern.C
    else:
        detail = refused(evidence, age)
        assert "guardian_photo_certificate: only for an applicant under 15" in detail
        assert str(age) not in detail.replace("under 15", "")  # no age, just the rule


def test_the_same_kou_document_type_twice_is_one_document() -> None:
    """甲 2点 are two documents; a record of types cannot tell one licence entered twice from
    two, and nobody holds two driving licences, passports or My Number cards."""
    detail = refused(in_person(LICENSE, LICENSE))
    assert "甲 1" in detail
    assert judge(in_person(LICENSE, PASSPORT)) is Pattern.B
    # Two 乙 of one type can be two documents (two 資格証, two passbooks): both count.
    assert judge(in_person(INQUIRY, PASSBOOK, PASSBOOK)) is Pattern.D


# --- in person: proxy material is refused ---------------------------------------------------------


def test_proxy_documents_in_an_in_person_proofing_are_invalid_input() -> None:
    evidence = replace(in_person(LICENSE, PASSPORT), proxy_documents=(MY_NUMBER,))
    with pytest.raises(InvalidInput) as caught:
        judge(evidence)
    assert not isinstance(caught.value, PolicyViolation)
    assert caught.value.code == "request.invalid"
    assert caught.value.context == {"field": "presence"}


# --- proxy pick-up: A–C ---------------------------------------------------------------------------

PROXY_MINIMAL = {
    # A: the proxy as in person A (甲 + a measure); the applicant 2点以上, ≥1 甲, others 甲 or
    # photo 乙.
    "A": (proxy((PASSPORT, STAFF_ID_PHOTO), (LICENSE,), (Measure.IC_CHIP_CHECK,)), Pattern.A),
    "A two kou": (proxy((PASSPORT, LICENSE), (MY_NUMBER,), (Measure.PIN_ENTRY,)), Pattern.A),
    # B: the proxy 甲 2点; the applicant ① 甲 ② 乙.
    "B": (proxy((PASSPORT, INSURANCE), (LICENSE, MY_NUMBER)), Pattern.B),
    # C: the proxy 甲 + 乙; the applicant ① photo 乙 ② two other 乙.
    "C": (proxy((STUDENT_ID_PHOTO, INSURANCE, PENSION), (LICENSE, PASSBOOK)), Pattern.C),
}


@pytest.mark.parametrize("name", PROXY_MINIMAL)
def test_proxy_pattern_accepted_with_its_minimal_documents(name: str) -> None:
    evidence, pattern = PROXY_MINIMAL[name]
    assert judge(evidence) is pattern


@pytest.mark.parametrize("name", PROXY_MINIMAL)
def test_proxy_pattern_refused_one_item_short(name: str) -> None:
    evidence, _ = PROXY_MINIMAL[name]
    shorter = one_short(evidence)
    assert len(shorter) == (len(evidence.applicant_documents) + len(evidence.proxy_documents)
                            + len(evidence.proxy_measures))
    for what, less in shorter:
        detail = refused(less)
        assert "none of patterns A–C for a proxy pick-up" in detail, what


@pytest.mark.parametrize("name", PROXY_MINIMAL)
def test_proxy_needs_the_letter_of_delegation(name: str) -> None:
    evidence, _ = PROXY_MINIMAL[name]
    detail = refused(replace(evidence, delegation_letter=False))
    assert "委任状" in detail and "疎明資料" not in detail


@pytest.mark.parametrize("name", PROXY_MINIMAL)
def test_proxy_needs_the_proof_that_the_applicant_cannot_come(name: str) -> None:
    evidence, _ = PROXY_MINIMAL[name]
    detail = refused(replace(evidence, hardship_proof=False))
    assert "疎明資料" in detail and "委任状" not in detail


def test_proxy_missing_both_letters_names_both() -> None:
    evidence, _ = PROXY_MINIMAL["B"]
    detail = refused(replace(evidence, delegation_letter=False, hardship_proof=False))
    assert "委任状" in detail and "疎明資料" in detail


def test_proxy_pattern_a_needs_a_photo_on_the_applicants_otsu() -> None:
    no_photo = proxy((PASSPORT, Document(T.EMPLOYEE_ID)), (LICENSE,), (Measure.IC_CHIP_CHECK,))
    detail = refused(no_photo)
    assert "乙 1 of which 0 with a photo" in detail


def test_proxy_pattern_c_needs_one_photo_otsu_among_three() -> None:
    no_photo = proxy((Document(T.STUDENT_ID), INSURANCE, PENSION), (LICENSE, PASSBOOK))
    refused(no_photo)


def test_proxy_patterns_d_and_e_do_not_exist() -> None:
    """The table's proxy column is "/" for D and E: an inquiry reply and a hearing do not do."""
    d_like = proxy((INQUIRY, LICENSE), (LICENSE, MY_NUMBER))
    refused(d_like)
    e_like = replace(proxy((INQUIRY, INSURANCE, RECEIPT), (LICENSE, PASSPORT)),
                     measures=frozenset({Measure.REGISTRY_HEARING}))
    refused(e_like)


def test_the_proxy_shows_the_documents_of_the_same_pattern() -> None:
    """同左: the proxy's documents are those of the same row as the applicant's."""
    # The applicant's documents fit row C, but the proxy's (甲 + a measure) fit row A only.
    refused(proxy((STUDENT_ID_PHOTO, INSURANCE, PENSION), (LICENSE,), (Measure.PIN_ENTRY,)))


def test_proxy_photo_certificates_of_the_2020_revision() -> None:
    """施設入所者: the facility head's certificate; 15歳未満: the guardian's — each counts as the
    applicant's photo 乙 (also for row A, with a 甲)."""
    facility = proxy((FACILITY_PHOTO, INSURANCE, PENSION), (LICENSE, PASSBOOK), in_facility=True)
    assert judge(facility) is Pattern.C
    detail = refused(replace(facility, applicant_in_facility=False))
    assert "facility_photo_certificate: only for an applicant living in the facility" in detail

    child = proxy((GUARDIAN_PHOTO, INSURANCE, Document(T.CHILD_MEDICAL_CERTIFICATE)),
                  (LICENSE, PASSBOOK))
    assert judge(child, age=10) is Pattern.C
    detail = refused(child, age=15)
    assert "guardian_photo_certificate: only for an applicant under 15" in detail

    row_a = proxy((PASSPORT, GUARDIAN_PHOTO), (LICENSE,), (Measure.PIN_ENTRY,))
    assert judge(row_a, age=3) is Pattern.A


def test_photo_certificates_do_not_identify_the_proxy() -> None:
    """They certify the applicant's photo; the proxy's own documents cannot use them."""
    own = (LICENSE, FACILITY_PHOTO)
    refused(proxy((STUDENT_ID_PHOTO, INSURANCE, PENSION), own, in_facility=True))


# --- personal data -------------------------------------------------------------------------------


def test_refusals_name_counts_and_rules_never_personal_data() -> None:
    """The evidence holds no personal data by construction (types, flags, dates of receipts and
    records); a refusal says what was counted and which rule failed, never a date or an age."""
    old_record = Document(T.DRIVING_RECORD_CERTIFICATE, issued_on=date(2011, 7, 19))
    old_receipt = Document(T.RECEIPT, issued_on=date(2025, 12, 24))
    detail = refused(in_person(INQUIRY, old_record, old_receipt, GUARDIAN_PHOTO,
                               measures=(Measure.REGISTRY_HEARING,)), age=37)
    assert "(counted: 甲 0, 乙 0 of which 0 with a photo, 照会回答書 1, receipts 0)" in detail
    assert "not counted:" in detail
    for secret in ("2011-07-19", "2011", "2025-12-24", "2025", "37"):
        assert secret not in detail, secret


# --- document order -------------------------------------------------------------------------

# One document of each kind the counter refuses, each for its own rule.
NOT_COUNTED = {
    "old driving record": Document(T.DRIVING_RECORD_CERTIFICATE, issued_on=date(2011, 7, 19)),
    "undated driving record": Document(T.DRIVING_RECORD_CERTIFICATE),
    "facility photo, not in a facility": FACILITY_PHOTO,
    "guardian photo, 15 or over": GUARDIAN_PHOTO,
    "old receipt": Document(T.RECEIPT, issued_on=date(2025, 12, 24)),
}


@pytest.mark.parametrize("name", IN_PERSON_MINIMAL)
def test_the_pattern_does_not_depend_on_the_order_of_the_documents(name: str) -> None:
    """The counter lists documents in whatever order they were shown: every order counts."""
    evidence, pattern = IN_PERSON_MINIMAL[name]
    for order in permutations(evidence.applicant_documents):
        assert judge(replace(evidence, applicant_documents=order)) is pattern, order


@pytest.mark.parametrize("refused_doc", NOT_COUNTED)
@pytest.mark.parametrize("name", IN_PERSON_MINIMAL)
def test_a_refused_document_anywhere_in_the_list_does_not_stop_the_count(
        name: str, refused_doc: str) -> None:
    """A document that does not count is skipped, and those after it still count: e.g.
    (old receipt, licence, insurance card) is pattern C."""
    evidence, pattern = IN_PERSON_MINIMAL[name]
    docs = evidence.applicant_documents
    for i in range(len(docs) + 1):
        shown = (*docs[:i], NOT_COUNTED[refused_doc], *docs[i:])
        assert judge(replace(evidence, applicant_documents=shown)) is pattern, (refused_doc, i)


def test_a_receipt_first_does_not_stop_the_count() -> None:
    assert judge(in_person(RECEIPT, LICENSE, INSURANCE)) is Pattern.C
    assert judge(in_person(INQUIRY, LICENSE)) is Pattern.D
    assert judge(in_person(LICENSE, LICENSE, INSURANCE)) is Pattern.C  # a repeat skipped first


@pytest.mark.parametrize("name", PROXY_MINIMAL)
def test_the_proxy_pattern_does_not_depend_on_the_order_of_the_documents(name: str) -> None:
    evidence, pattern = PROXY_MINIMAL[name]
    for applicant in permutations(evidence.applicant_documents):
        for own in permutations(evidence.proxy_documents):
            shown = replace(evidence, applicant_documents=(RECEIPT, *applicant),
                            proxy_documents=(INQUIRY, *own))
            assert judge(shown) is pattern, (applicant, own)


# --- proxy defaults -------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROXY_MINIMAL)
def test_a_proxy_evidence_left_at_its_defaults_has_no_letter_and_no_hardship_proof(
        name: str) -> None:
    """Evidence built without the flags says neither was shown: the defaults refuse."""
    evidence, _ = PROXY_MINIMAL[name]
    bare = Evidence(presence=Presence.PROXY,
                    applicant_documents=evidence.applicant_documents,
                    proxy_documents=evidence.proxy_documents,
                    proxy_measures=evidence.proxy_measures)
    assert refused(bare) == ("a proxy pick-up needs a letter of delegation (委任状) and proof "
                             "that the applicant cannot come (疎明資料)")


def test_an_evidence_left_at_its_defaults_has_no_measures_and_no_facility() -> None:
    bare = Evidence(presence=Presence.IN_PERSON, applicant_documents=(LICENSE, FACILITY_PHOTO))
    assert bare.measures == frozenset() and bare.proxy_documents == ()
    assert "not counted: facility_photo_certificate" in refused(bare)
    assert Document(T.STUDENT_ID) == Document(T.STUDENT_ID, has_photo=False, issued_on=None)


# --- what a refusal says (scripts/mutation survivors) --------------------------------------------


def test_a_refusal_counts_each_document_it_counted() -> None:
    detail = refused(in_person(RECEIPT, RECEIPT, STAFF_ID_PHOTO, STUDENT_ID_PHOTO))
    assert "(counted: 甲 0, 乙 2 of which 2 with a photo, 照会回答書 0, receipts 2)" in detail
    detail = refused(in_person(INQUIRY, INQUIRY, RECEIPT))
    assert "(counted: 甲 0, 乙 0 of which 0 with a photo, 照会回答書 2, receipts 1)" in detail


def test_the_whole_refusal_of_an_in_person_proofing() -> None:
    old_receipt = Document(T.RECEIPT, issued_on=date(2025, 12, 24))
    assert refused(in_person(old_receipt, GUARDIAN_PHOTO, INSURANCE)) == (
        "the applicant's documents satisfy none of patterns A–E "
        "(counted: 甲 0, 乙 1 of which 0 with a photo, 照会回答書 0, receipts 0) "
        "not counted: receipt: must be dated within the last 3 months (※4); "
        "guardian_photo_certificate: only for an applicant under 15")


def test_the_whole_refusal_of_a_proxy_pick_up() -> None:
    assert refused(proxy((INSURANCE,), (LICENSE, PASSPORT))) == (
        "the proxy's and the applicant's documents satisfy none of patterns A–C for a proxy "
        "pick-up (counted: 甲 0, 乙 1 of which 0 with a photo, 照会回答書 0, receipts 0)")


def test_proxy_documents_in_person_are_refused_with_their_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        judge(replace(in_person(LICENSE, PASSPORT), proxy_documents=(LICENSE,)))
    assert (caught.value.detail, caught.value.context) == (
        "proxy documents belong to a proxy pick-up", {"field": "presence"})


def test_the_proxy_own_receipts_and_photo_certificates_are_judged_like_an_adults() -> None:
    """The proxy's documents are counted as of the day, for an adult not in a facility: a
    receipt within 3 months is a receipt, a guardian's photo certificate counts for nothing."""
    own = (RECEIPT, GUARDIAN_PHOTO, LICENSE, MY_NUMBER)
    assert judge(proxy((PASSPORT, INSURANCE), own)) is Pattern.B


# --- the verdict whole (assess), as the operator console shows it ------------------------------


def test_the_verdict_counts_each_persons_documents_and_names_what_was_not_counted() -> None:
    old_record = Document(T.DRIVING_RECORD_CERTIFICATE, issued_on=date(2011, 1, 1))
    stale = Document(T.RECEIPT, issued_on=date(2020, 1, 1))
    verdict = assess(in_person(PASSPORT, PASSPORT, old_record, stale, STUDENT_ID_PHOTO, INSURANCE,
                               FACILITY_PHOTO, INQUIRY),
                     applicant_age=ADULT_AGE, today=TODAY)
    assert verdict.pattern is Pattern.C  # one 甲 and a 乙; D's inquiry reply comes later
    c = verdict.applicant
    assert (c.kou, c.otsu, c.otsu_photo, c.inquiry_reply, c.receipts) == (1, 2, 1, 1, 0)
    assert c.not_counted == [(T.PASSPORT, NotCounted.KOU_REPEATED),
                             (T.DRIVING_RECORD_CERTIFICATE,
                              NotCounted.DRIVING_RECORD_BEFORE_2012),
                             (T.RECEIPT, NotCounted.RECEIPT_NOT_RECENT),
                             (T.FACILITY_PHOTO_CERTIFICATE, NotCounted.NOT_IN_FACILITY)]
    assert verdict.proxy is None and verdict.missing == ()


def test_the_verdict_and_the_refusal_are_one_rule() -> None:
    """evaluate raises exactly when assess finds no pattern, with assess's words."""
    cases = [in_person(), in_person(LICENSE), in_person(LICENSE, PASSPORT),
             in_person(INQUIRY, INSURANCE, RECEIPT, measures=(Measure.REGISTRY_HEARING,)),
             *(evidence for evidence, _ in PROXY_MINIMAL.values()),
             replace(PROXY_MINIMAL["A"][0], delegation_letter=False),
             replace(PROXY_MINIMAL["C"][0], proxy_documents=())]
    for evidence in cases:
        verdict = assess(evidence, applicant_age=ADULT_AGE, today=TODAY)
        if verdict.pattern is None:
            assert refused(evidence) == verdict.refusal()
        else:
            assert judge(evidence) is verdict.pattern


def test_a_proxy_verdict_says_which_pattern_the_documents_meet_and_what_is_missing() -> None:
    evidence, pattern = PROXY_MINIMAL["B"]
    lacking = assess(replace(evidence, delegation_letter=False, hardship_proof=False),
                     applicant_age=ADULT_AGE, today=TODAY)
    assert (lacking.pattern, lacking.documents_meet) == (None, pattern)
    assert lacking.missing == (Missing.DELEGATION_LETTER, Missing.HARDSHIP_PROOF)
    assert lacking.proxy is not None and lacking.proxy.kou == 2
    short = assess(replace(evidence, proxy_documents=(LICENSE,)), applicant_age=ADULT_AGE,
                   today=TODAY)
    assert (short.pattern, short.documents_meet, short.missing) == (None, None, ())
    with pytest.raises(InvalidInput):
        assess(replace(in_person(LICENSE), proxy_documents=(PASSPORT,)),
               applicant_age=ADULT_AGE, today=TODAY)
