from hmt_stream.languages import CHINESE, LANGUAGES

CODES = ("zh en fr pt es ja tr ru ar ko th it de vi ms id tl hi zh-Hant pl cs nl km my fa gu ur te mr he bn ta "
         "uk bo kk mn ug yue").split()


def test_the_38_codes_in_the_model_cards_order() -> None:
    assert list(LANGUAGES) == CODES


def test_every_language_has_an_english_and_a_chinese_name() -> None:
    assert LANGUAGES["yue"].name == "Cantonese" and LANGUAGES["yue"].zh_name == "粤语"
    assert LANGUAGES["zh-Hant"].zh_name == "繁体中文"
    assert all(lang.name and lang.zh_name for lang in LANGUAGES.values())
    assert CHINESE == {"zh", "zh-Hant", "yue"}
