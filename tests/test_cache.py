import time

from hmt_stream.cache import PhraseCache, normalise


def test_normalise_trims_collapses_spaces_and_keeps_line_breaks() -> None:
    assert normalise("  Hello \t  world \n next ") == "Hello world \n next"
    assert normalise("e\u0301") == "\u00e9"


def test_hits_misses_lru_and_ttl() -> None:
    cache = PhraseCache(max_entries=2, ttl_s=0.2)
    keys = [cache.key("m", "en", "fr", text, ("opts",)) for text in ("a", "b", "c")]
    assert cache.get(keys[0]) is None
    cache.put(keys[0], "A")
    cache.put(keys[1], "B")
    assert cache.get(keys[0]) == "A"  # a is now the most recently used
    cache.put(keys[2], "C")
    assert cache.get(keys[1]) is None and cache.get(keys[0]) == "A"
    assert (cache.hits, cache.misses) == (2, 2)
    time.sleep(0.25)
    assert cache.get(keys[2]) is None


def test_options_and_languages_are_part_of_the_key() -> None:
    assert PhraseCache.key("m", "en", "fr", "x", 1) != PhraseCache.key("m", "en", "de", "x", 1)
    assert PhraseCache.key("m", "en", "fr", "x", 1) != PhraseCache.key("m", "en", "fr", "x", 2)
    assert PhraseCache.key("m", "en", "fr", " x ", 1) == PhraseCache.key("m", "en", "fr", "x", 1)


def test_a_disabled_cache_stores_nothing() -> None:
    cache = PhraseCache(max_entries=2, ttl_s=10, enabled=False)
    cache.put("k", "v")
    assert cache.get("k") is None and len(cache) == 0
