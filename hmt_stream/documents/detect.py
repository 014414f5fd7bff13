"""Which language a text is in: lingua (offline n-gram models) for the languages of ours it knows, and script and
character rules for those it does not (Khmer, Burmese, Tibetan, Uyghur, Cantonese, Traditional Chinese)."""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..languages import LANGUAGES

# Scripts that name their language among ours by themselves.
_SCRIPTS = {"km": ((0x1780, 0x17FF), (0x19E0, 0x19FF)), "my": ((0x1000, 0x109F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F)),
            "bo": ((0x0F00, 0x0FFF),)}
# Letters of the Uyghur Arabic alphabet that Arabic, Persian and Urdu do not use.
_UYGHUR = frozenset("ېۆۈۋڭۇە")
# Characters written in Cantonese and (almost) never in Mandarin; the weak ones count half.
_CANTONESE = frozenset("咗嘅哋冇嚟佢喺嘢啲㗎嗰搵嘥冚咁睇唔")
_CANTONESE_WEAK = frozenset("噉啱攞諗乜")
# Frequent characters that only one of the two standard Chinese scripts uses.
_TRADITIONAL = frozenset(
    "們這個來說時會對學國開關長門為與還發現點電體見問麼實動進過東車書樣錢讓給應該話語認識愛覺聽讀寫漢選記總經濟"
    "產業務員處邊頭從眾無氣種於並運遠連變風飛馬鳥魚龍萬義樂習鄉買亂爭亞親僅價優傷傳偉側債傾償儲壓廠廣歲歷區醫"
    "華單賣衛際陸陽隊機權條極構標橋歡殺熱爾狀獨獲環畫當療盡監盤確礦穩積競筆節築簡類紅約級紀納紙組細終結絕統絲"
    "綠維網緊線練縣織繼續聖聯聲職腦臉興舊艦藝術蘇藥號虛蟲裝補製複視觀計訊討訓設許論證試詩誤誰課調談請諸謝警議"
    "護貝負財貨質貴費資購贊趕軍轉輕輸辦達適郵釋針鐵銀銅錯錄鍵間閱陣陰險隨雙雜難靈響頁頂項順須領題額飯館驗髮鬥"
    "鮮鳴黃齊齒龜歐灣氣島內兩圖夠參")
_SIMPLIFIED = frozenset(
    "们这个来说时会对学国开关长门为与还发现点电体见问么实动进过东车书样钱让给应该话语认识爱觉听读写汉选记总经济"
    "产业务员处边头从众无气种并运远连变风飞马鸟鱼龙万义乐习乡买乱争亚亲仅价优伤传伟侧债倾偿储压厂广岁历区医"
    "华单卖卫际陆阳队机权条极构标桥欢杀热尔状独获环画当疗尽监盘确矿稳积竞笔节筑简类红约级纪纳纸组细终结绝统丝"
    "绿维网紧线练县织继续圣联声职脑脸兴旧舰艺苏药号虚虫装补复视观计讯讨训设许论证试诗误谁课调谈请诸谢议"
    "护贝负财货质贵费资购赞赶军转轻输办达适邮释针铁银铜错录键间阅阵阴险随双杂难灵响页顶项顺须领题额饭馆验斗"
    "鲜鸣黄齐齿龟欧湾岛内两图够参")


@dataclass(frozen=True)
class Detection:
    language: str  # one of our codes
    confidence: float  # 0..1

    def as_dict(self) -> dict[str, Any]:
        return {"language": self.language, "confidence": self.confidence}


_lock = threading.Lock()
_detector: Any = None


def detector() -> Any:
    """lingua's detector for the languages of ours it knows, in its high-accuracy mode (short texts need it: the
    low-accuracy mode confuses Malay and Indonesian, Hindi and Marathi). Built once, models preloaded: a few
    seconds and about 600 MB (see docs/benchmarks.md)."""
    global _detector
    with _lock:
        if _detector is None:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

            known = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in LANGUAGES
                     if hasattr(IsoCode639_1, code.upper())]
            _detector = LanguageDetectorBuilder.from_languages(*known).with_preloaded_language_models().build()
        return _detector


def _letters(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch)[0] in "LM"]


def _script_share(letters: list[str], ranges: tuple[tuple[int, int], ...]) -> float:
    inside = sum(1 for ch in letters if any(low <= ord(ch) <= high for low, high in ranges))
    return inside / len(letters)


def _chinese(text: str) -> str:
    """zh, zh-Hant or yue for a text known to be Chinese."""
    cantonese = sum(1.0 if ch in _CANTONESE else 0.5 if ch in _CANTONESE_WEAK else 0.0 for ch in text)
    if cantonese >= 1:
        return "yue"
    traditional = sum(1 for ch in text if ch in _TRADITIONAL)
    simplified = sum(1 for ch in text if ch in _SIMPLIFIED)
    return "zh-Hant" if traditional > simplified else "zh"


def _by_rule(text: str, letters: list[str]) -> Detection | None:
    for code, ranges in _SCRIPTS.items():
        share = _script_share(letters, ranges)
        if share > 0.5:
            return Detection(code, round(share, 3))
    arabic = [ch for ch in letters if 0x0600 <= ord(ch) <= 0x06FF]
    if len(arabic) * 2 > len(letters):
        marks = sum(1 for ch in arabic if ch in _UYGHUR)
        if marks >= 2 and marks * 50 >= len(arabic):
            return Detection("ug", round(len(arabic) / len(letters), 3))
    return None


def detect(text: str, limit: int = 5) -> list[Detection]:
    """The likely languages of text, best first (empty when it has no letters)."""
    letters = _letters(text)
    if not letters:
        return []
    rule = _by_rule(text, letters)
    if rule is not None:
        return [rule]
    found: list[Detection] = []
    for value in detector().compute_language_confidence_values(text):
        if value.value <= 0.0005 or len(found) >= limit:
            break
        code = value.language.iso_code_639_1.name.lower()
        found.append(Detection(_chinese(text) if code == "zh" else code, round(value.value, 3)))
    return found


def best(text: str) -> Detection | None:
    found = detect(text, limit=1)
    return found[0] if found else None
