from hmt_stream.prompts import (
    HUNYUAN_MT,
    HY_MT15,
    build_prompt,
    glossary_hits,
    is_mostly_han,
    profile_for,
    render,
    uses_chinese_template,
)


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


# -- profiles: golden prompts for every template (HY-MT1.5's README, Hunyuan-MT-7B's model card) ------------------


def test_hy_mt15_basic_templates() -> None:
    assert render(HY_MT15, "It's on the house.", "en", "zh").text == (
        "将以下文本翻译为中文，注意只需要输出翻译后的结果，不要额外解释：\n\nIt's on the house.")
    assert render(HY_MT15, "你好", "zh", "fr").text == (
        "将以下文本翻译为法语，注意只需要输出翻译后的结果，不要额外解释：\n\n你好")
    assert render(HY_MT15, "Bonjour", "fr", "de").text == (
        "Translate the following segment into German, without additional explanation.\n\nBonjour")
    assert render(HUNYUAN_MT, "你好", "zh", "fr").text == "把下面的文本翻译成法语，不要额外解释。\n\n你好"


def test_terminology_template_one_line_per_entry() -> None:
    prompt = render(HY_MT15, "The Hunyuan model runs on a GPU.", "en", "zh",
                    glossary=[("Hunyuan", "混元"), ("GPU", "图形处理器")])
    assert prompt.template == "terminology"
    assert prompt.text == ("参考下面的翻译：\nHunyuan 翻译成 混元\nGPU 翻译成 图形处理器\n\n"
                           "将以下文本翻译为中文，注意只需要输出翻译后的结果，不要额外解释：\n"
                           "The Hunyuan model runs on a GPU.")


def test_contextual_template() -> None:
    prompt = render(HY_MT15, "He took it off.", "en", "fr", context="The traveller wore a cloak.")
    assert prompt.template == "context"
    assert prompt.text == ("The traveller wore a cloak.\n"
                           "参考上面的信息，把下面的文本翻译成法语，注意不需要翻译上文，也不要额外解释：\n"
                           "He took it off.\n")


def test_formatted_template_and_a_glossary_before_it() -> None:
    prompt = render(HY_MT15, "Read <s1>the story</s1>.", "en", "zh", formatted=True)
    assert prompt.template == "formatted"
    assert prompt.text == ("将以下<source></source>之间的文本翻译为中文，注意只需要输出翻译后的结果，不要额外解释，"
                           "原文中的<sn></sn>标签表示标签内文本包含格式信息，需要在译文中相应的位置尽量保留该标签。"
                           "输出格式为：<target>str</target>\n\n<source>Read <s1>the story</s1>.</source>")
    with_terms = render(HY_MT15, "Read <s1>the story</s1>.", "en", "ja", glossary=[("story", "物語")],
                        formatted=True)
    assert with_terms.text.startswith("参考下面的翻译：\nstory 翻译成 物語\n\n"
                                      "将以下<source></source>之间的文本翻译为日语")


def test_profiles_by_setting_and_by_model_name() -> None:
    assert profile_for("auto", "tencent/Hunyuan-MT-7B") is HUNYUAN_MT
    assert profile_for("auto", "demo") is HUNYUAN_MT
    for name in ("tencent/HY-MT1.5-7B", "tencent/HY-MT1.5-1.8B", "tencent/HY-MT1.5-7B-FP8", "/models/hy_mt1.5"):
        assert profile_for("auto", name) is HY_MT15
    assert profile_for("hy-mt1.5", "tencent/Hunyuan-MT-7B") is HY_MT15
    assert profile_for("hunyuan-mt", "tencent/HY-MT1.5-7B") is HUNYUAN_MT


def test_glossary_hits_only_terms_in_the_text() -> None:
    glossary = [("cloak", "manteau"), ("Sun", "soleil"), ("moon", "lune"), ("cloak", "manteau")]
    assert glossary_hits(glossary, "The sun and the CLOAK.") == [("cloak", "manteau"), ("Sun", "soleil")]
    assert glossary_hits(glossary, "Nothing here.") == []
