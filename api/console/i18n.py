"""The console's words, in Japanese (the default: the people at the counters and the call centre
work in it) and English. A page asks for a key; a missing key is a test failure, never a blank
(tests/api/console/test_console_i18n.py checks that both catalogues have the same keys)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

LANGUAGES = ("ja", "en")
DEFAULT = "ja"

_JA = {
    "app": "公的個人認証 運用コンソール",
    "lang.other": "English",
    "login.title": "サインイン",
    "login.username": "ユーザー名",
    "login.password": "パスワード",
    "login.submit": "次へ",
    "login.failed": "ユーザー名、パスワードまたは確認コードが正しくないか、現在サインインできない"
                    "アカウントです。",
    "login.throttled": "失敗が続いたため、しばらく受け付けません。{seconds} 秒後にもう一度お試し"
                       "ください。",
    "login.busy": "混み合っています。少し待ってからもう一度お試しください。",
    "totp.title": "確認コード",
    "totp.help": "認証アプリに表示されている6桁のコードを入力してください。",
    "totp.code": "確認コード（6桁）",
    "totp.submit": "サインイン",
    "session.ended": "セッションが終了しました。もう一度サインインしてください。",
    "home.title": "ホーム",
    "home.signed_in_as": "サインイン中",
    "home.role": "役割",
    "home.municipality": "市区町村",
    "home.national": "全国",
    "home.resident_lookup": "住民の照会",
    "logout": "サインアウト",
    "role.clerk": "窓口職員",
    "role.agent": "コールセンター",
    "role.supervisor": "統括管理者",
    "resident.title": "住民の照会",
    "resident.id": "住民ID",
    "resident.lookup": "照会",
    "resident.name": "氏名",
    "resident.birth_date": "生年月日",
    "resident.sex": "性別",
    "resident.address": "住所",
    "resident.status": "状態",
    "resident.municipality": "市区町村",
    "sex.1": "男",
    "sex.2": "女",
    "sex.9": "適用不能",
    "resident_status.active": "有効",
    "resident_status.deceased": "死亡",
    "cc.title": "発信者の確認",
    "cc.help": "発信者にカードの番号と生年月日を伺い、入力してください。両方が一致した場合にだけ、"
               "カードと電子証明書の状態を表示します。",
    "cc.card_number": "カード番号",
    "cc.birth_date": "生年月日（例 19900102）",
    "cc.verify": "確認",
    "cc.file": "発信者の電子証明書",
    "cc.verified": "カード番号と生年月日が一致しました。",
    "cc.card_status": "カードの状態",
    "cc.card_expires": "カードの有効期限",
    "cc.certificates": "電子証明書",
    "cc.kind": "種類",
    "cc.serial": "シリアル番号",
    "cc.standing": "状態",
    "cc.not_after": "有効期限",
    "cc.none": "有効期間内の電子証明書はありません。",
    "cc.hold_phone": "スマートフォンの紛失：スマホ用電子証明書を一時保留",
    "cc.card_lost": "カードの紛失：カードの電子証明書を一時保留",
    "cc.lift_note": "スマホ用電子証明書の一時保留の解除は、本人がスマートフォンから申請します。"
                    "カードの一時保留は解除できません（発見後は窓口で再発行）。",
    "cc.next_caller": "次の発信者",
    "cc.done": "受け付けました",
    "cc.done_phone": "スマホ用電子証明書を一時保留にしました。",
    "cc.done_card": "カードの電子証明書を一時保留にしました。",
    "home.callcentre": "発信者の確認と一時保留",
    "card_status.active": "利用中",
    "card_status.lost": "紛失（一時保留中）",
    "card_status.returned": "返納済み",
    "card_status.replaced": "再交付により失効",
    "kind.card_sign": "署名用（カード）",
    "kind.card_auth": "利用者証明用（カード）",
    "kind.mobile_sign": "署名用（スマホ）",
    "kind.mobile_auth": "利用者証明用（スマホ）",
    "standing.valid": "有効",
    "standing.on_hold": "一時保留",
    "standing.revoked": "失効",
    "error.title": "エラー",
    "error.forbidden": "この操作を行う権限がありません。",
    "error.not_found": "見つかりません。",
    "error.invalid": "入力に誤りがあります。",
    "error.csrf": "フォームの有効期限が切れたか、不正な送信です。ページを開き直してください。",
    "error.other": "処理できませんでした。",
    "error.back": "ホームへ戻る",
}

_EN = {
    "app": "JPKI operator console",
    "lang.other": "日本語",
    "login.title": "Sign in",
    "login.username": "User name",
    "login.password": "Password",
    "login.submit": "Next",
    "login.failed": "The user name, password or code is wrong, or the account cannot sign in "
                    "now.",
    "login.throttled": "Too many failures: try again in {seconds} seconds.",
    "login.busy": "The service is busy: wait a moment and try again.",
    "totp.title": "Verification code",
    "totp.help": "Enter the 6-digit code your authenticator app shows.",
    "totp.code": "Code (6 digits)",
    "totp.submit": "Sign in",
    "session.ended": "Your session has ended. Please sign in again.",
    "home.title": "Home",
    "home.signed_in_as": "Signed in as",
    "home.role": "Role",
    "home.municipality": "Municipality",
    "home.national": "National",
    "home.resident_lookup": "Look up a resident",
    "logout": "Sign out",
    "role.clerk": "Counter clerk",
    "role.agent": "Call centre",
    "role.supervisor": "Supervisor",
    "resident.title": "Resident",
    "resident.id": "Resident id",
    "resident.lookup": "Look up",
    "resident.name": "Name",
    "resident.birth_date": "Date of birth",
    "resident.sex": "Sex",
    "resident.address": "Address",
    "resident.status": "Status",
    "resident.municipality": "Municipality",
    "sex.1": "Male",
    "sex.2": "Female",
    "sex.9": "Not applicable",
    "resident_status.active": "Active",
    "resident_status.deceased": "Deceased",
    "cc.title": "Verify the caller",
    "cc.help": "Ask the caller for their card number and date of birth. Their card and "
               "certificates are shown only when both match.",
    "cc.card_number": "Card number",
    "cc.birth_date": "Date of birth (e.g. 19900102)",
    "cc.verify": "Verify",
    "cc.file": "The caller's certificates",
    "cc.verified": "The card number and the date of birth match.",
    "cc.card_status": "Card",
    "cc.card_expires": "Card expires",
    "cc.certificates": "Certificates",
    "cc.kind": "Kind",
    "cc.serial": "Serial number",
    "cc.standing": "Status",
    "cc.not_after": "Valid until",
    "cc.none": "No certificate within its validity.",
    "cc.hold_phone": "Lost phone: put the smartphone certificates on hold",
    "cc.card_lost": "Lost card: put the card's certificates on hold",
    "cc.lift_note": "The holder lifts a phone hold from the phone itself. A card hold is never "
                    "lifted (a found card gets new certificates at the counter).",
    "cc.next_caller": "Next caller",
    "cc.done": "Done",
    "cc.done_phone": "The smartphone certificates are on hold.",
    "cc.done_card": "The card's certificates are on hold.",
    "home.callcentre": "Verify a caller and put certificates on hold",
    "card_status.active": "In use",
    "card_status.lost": "Lost (certificates on hold)",
    "card_status.returned": "Returned",
    "card_status.replaced": "Replaced",
    "kind.card_sign": "Signing (card)",
    "kind.card_auth": "User authentication (card)",
    "kind.mobile_sign": "Signing (phone)",
    "kind.mobile_auth": "User authentication (phone)",
    "standing.valid": "Valid",
    "standing.on_hold": "On hold",
    "standing.revoked": "Revoked",
    "error.title": "Error",
    "error.forbidden": "You are not allowed to do this.",
    "error.not_found": "Not found.",
    "error.invalid": "The input is not valid.",
    "error.csrf": "The form has expired or was not sent by this console. Open the page again.",
    "error.other": "This could not be done.",
    "error.back": "Back to the home page",
}

CATALOGUES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"ja": MappingProxyType(_JA), "en": MappingProxyType(_EN)})


def choose(query: str | None, cookie: str | None) -> str:
    """The page's language: ``?lang=`` when given, else the cookie, else Japanese."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT


def translator(language: str) -> Mapping[str, str]:
    return CATALOGUES[language]
