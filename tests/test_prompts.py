from hmt_stream.prompts import build_prompt, is_mostly_han, uses_chinese_template


def test_zh_to_xx_uses_the_chinese_template_with_the_targets_chinese_name() -> None:
    assert build_prompt("你好，世界", "zh", "en") == "把下面的文本翻译成英语，不要额外解释。\n\n你好，世界"


def test_xx_to_zh_uses_the_chinese_template() -> None:
    assert build_prompt("Hello", "en", "zh") == "把下面的文本翻译成中文，不要额外解释。\n\nHello"


def test_xx_to_xx_uses_the_english_template_with_the_targets_english_name() -> None:
    assert build_prompt("Bonjour", "fr", "de") == (
        "Translate the following segment into German, without additional explanation.\n\nBonjour")


def test_traditional_chinese_and_cantonese_names() -> None:
    assert build_prompt("Hello", "en", "zh-Hant") == "把下面的文本翻译成繁体中文，不要额外解释。\n\nHello"
    assert build_prompt("Hello", "en", "yue") == "把下面的文本翻译成粤语，不要额外解释。\n\nHello"


def test_cantonese_source_counts_as_chinese() -> None:
    assert build_prompt("你食咗飯未", "yue", "fr").startswith("把下面的文本翻译成法语")


def test_auto_source_picks_the_template_from_target_and_script() -> None:
    assert build_prompt("今天天气很好", "auto", "en").startswith("把下面的文本翻译成英语")
    assert build_prompt("Good morning", "auto", "zh").startswith("把下面的文本翻译成中文")
    assert build_prompt("Good morning", "auto", "ja") == (
        "Translate the following segment into Japanese, without additional explanation.\n\nGood morning")


def test_mostly_han_counts_letters_only() -> None:
    assert is_mostly_han("中文 text 中文字")
    assert not is_mostly_han("mostly English 中")
    assert not is_mostly_han("12345 !!!")
    assert not uses_chinese_template("auto", "ko", "안녕하세요")
