"""Story clustering: copies and versions of one report match, different reports do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newswatch.alerts.match.clustering import StoryClusterer, clean_title, shingles

T0 = datetime(2019, 1, 8, 9, 0, tzinfo=UTC)

KIM_XI_TITLE = "Kim Jong Un arrives in Beijing for talks with Xi Jinping"
KIM_XI = (
    "North Korean leader Kim Jong Un arrived in Beijing on Tuesday on an unannounced visit "
    "for talks with Chinese President Xi Jinping, state media said, as preparations gather "
    "pace for a second summit with U.S. President Donald Trump. Kim travelled by armoured "
    "train with his wife Ri Sol Ju and senior officials including Kim Yong Chol, who has led "
    "negotiations with Washington. The visit, his fourth to China in ten months, comes as "
    "Pyongyang presses for relief from international sanctions in return for steps toward "
    "denuclearisation, and as Beijing seeks a role in any settlement on the peninsula."
)
SANCTIONS_TITLE = "UN panel says ship-to-ship transfers of oil to North Korea continue"
SANCTIONS = (
    "A confidential report by United Nations sanctions monitors says North Korea keeps "
    "importing refined petroleum through illicit ship-to-ship transfers at sea, breaching "
    "caps set by the Security Council. The monitors list tankers that switched off their "
    "transponders and say coal exports continue through front companies. Diplomats said the "
    "report would be discussed by the council's sanctions committee next month."
)
SUMMIT_KO_TITLE = "이재명 대통령, 시진핑 주석과 베이징서 한중 정상회담"
SUMMIT_KO = (
    "이재명 대통령은 5일 베이징 인민대회당에서 시진핑 중국 국가주석과 정상회담을 갖고 "
    "한중 전략적 협력동반자 관계를 복원하기로 했다. 두 정상은 한반도 비핵화와 평화 정착을 "
    "위해 긴밀히 소통하기로 하고 공급망 협력과 문화 교류 확대 방안을 논의했다. 이 대통령은 "
    "시 주석에게 북한과의 대화 재개를 위한 중국의 건설적 역할을 요청했다."
)
REGULATOR_KO_TITLE = "금융감독원, 불완전판매 은행에 기관경고 제재"
REGULATOR_KO = (
    "금융감독원은 고위험 파생결합상품을 불완전판매한 시중은행 두 곳에 기관경고와 과태료 "
    "제재를 내렸다고 밝혔다. 금감원은 투자자 보호 의무를 위반한 임직원에 대해서도 감봉 등 "
    "징계를 요구했으며 재발 방지를 위한 내부통제 개선을 주문했다."
)


@pytest.fixture
def clusterer() -> StoryClusterer:
    return StoryClusterer()


def test_signature_is_stable_bytes(clusterer: StoryClusterer) -> None:
    first = clusterer.signature(KIM_XI_TITLE, KIM_XI)
    again = StoryClusterer().signature(KIM_XI_TITLE, KIM_XI)
    assert isinstance(first, bytes)
    assert first == again
    assert len(first) <= 4 + 8 * clusterer.k


def test_signature_ignores_case_width_and_spacing(clusterer: StoryClusterer) -> None:
    plain = clusterer.signature(KIM_XI_TITLE, KIM_XI)
    shouted = clusterer.signature(KIM_XI_TITLE.upper(), "  ".join(KIM_XI.upper().split()))
    assert plain == shouted


@pytest.mark.parametrize(
    ("title", "text"),
    [(KIM_XI_TITLE, KIM_XI), (SANCTIONS_TITLE, SANCTIONS), (SUMMIT_KO_TITLE, SUMMIT_KO)],
)
def test_copies_and_versions_match(clusterer: StoryClusterer, title: str, text: str) -> None:
    original = clusterer.signature(title, text)
    versions = [
        (title, text),  # the same copy from another feed
        ("UPDATE 1-" + title, "(Wire) - " + text + " Copyright. All rights reserved."),
        (title, text[: len(text) // 2]),  # a feed summary of the full story
        (title, " ".join(w for i, w in enumerate(text.split()) if i % 9 != 4)),  # light edits
    ]
    for version in versions:
        assert clusterer.same_event(original, clusterer.signature(*version)), version[0]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((KIM_XI_TITLE, KIM_XI), (SANCTIONS_TITLE, SANCTIONS)),
        ((SUMMIT_KO_TITLE, SUMMIT_KO), (REGULATOR_KO_TITLE, REGULATOR_KO)),
        ((KIM_XI_TITLE, KIM_XI), (SUMMIT_KO_TITLE, SUMMIT_KO)),
    ],
)
def test_different_stories_do_not_match(
    clusterer: StoryClusterer, a: tuple[str, str], b: tuple[str, str]
) -> None:
    assert not clusterer.same_event(clusterer.signature(*a), clusterer.signature(*b))


def test_cjk_is_shingled_by_characters() -> None:
    found = shingles("대북제재 강화", "")
    assert {"대북제", "북제재", "강화"} <= found


def test_function_words_are_not_shingles() -> None:
    found = shingles("The talks of the leaders", "")
    assert "the" not in found
    assert {"talks", "leaders", "talks leaders"} <= found


def test_similarity_is_exact_for_short_stories(clusterer: StoryClusterer) -> None:
    a = clusterer.signature("alpha bravo charlie delta", "")
    b = clusterer.signature("alpha bravo charlie echo", "")
    jaccard, _ = clusterer.similarity(a, b)
    a_set, b_set = shingles("alpha bravo charlie delta", ""), shingles("alpha bravo charlie echo", "")
    assert jaccard == pytest.approx(len(a_set & b_set) / len(a_set | b_set))


def test_estimate_for_long_stories_is_close() -> None:
    # a sample of 128 hashes: each estimate is off by about 0.04 (one standard error) at J = 1/3
    wide = StoryClusterer(k=128, lead=10**6)
    errors = []
    for prefix in ("w", "word", "x", "token", "k", "zz", "alpha", "q"):
        words = [f"{prefix}{i}" for i in range(3000)]
        a_text, b_text = " ".join(words[:2000]), " ".join(words[1000:3000])
        a_set, b_set = shingles("", a_text, lead=10**6), shingles("", b_text, lead=10**6)
        exact = len(a_set & b_set) / len(a_set | b_set)
        estimate, _ = wide.similarity(wide.signature("", a_text), wide.signature("", b_text))
        errors.append(estimate - exact)
    assert max(abs(e) for e in errors) < 0.15
    assert abs(sum(errors) / len(errors)) < 0.05
    assert StoryClusterer().k == 128


def test_short_texts_need_jaccard_not_containment(clusterer: StoryClusterer) -> None:
    tiny = clusterer.signature("North Korea", "")
    full = clusterer.signature(SANCTIONS_TITLE, SANCTIONS)
    assert not clusterer.same_event(tiny, full)


def test_match_cluster_picks_best_candidate_in_window(clusterer: StoryClusterer) -> None:
    story = clusterer.sketch(KIM_XI_TITLE, KIM_XI)
    copy = clusterer.sketch(KIM_XI_TITLE, KIM_XI)
    version = clusterer.sketch(KIM_XI_TITLE, KIM_XI[:300])
    other = clusterer.sketch(SANCTIONS_TITLE, SANCTIONS)
    candidates = [
        ("other", other, T0),
        ("old-copy", copy, T0 - timedelta(days=3)),
        ("summary", version, T0 - timedelta(hours=2)),
        ("copy", copy, T0 - timedelta(hours=5)),
    ]
    assert clusterer.match_cluster(story, T0, candidates) == "copy"
    assert clusterer.match_cluster(story, T0, candidates[:2]) is None
    assert clusterer.match_cluster(story, T0, []) is None


def test_window_is_configurable() -> None:
    clusterer = StoryClusterer(window=timedelta(hours=1))
    sig = clusterer.sketch(KIM_XI_TITLE, KIM_XI)
    assert clusterer.match_cluster(sig, T0, [(7, sig, T0 - timedelta(minutes=30))]) == 7
    assert clusterer.match_cluster(sig, T0, [(7, sig, T0 - timedelta(hours=2))]) is None


def test_empty_story(clusterer: StoryClusterer) -> None:
    empty = clusterer.signature("", "")
    assert not clusterer.same_event(empty, empty)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": timedelta(0)},
        {"k": 4},
        {"jaccard": 0},
        {"containment": 1.5},
    ],
)
def test_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        StoryClusterer(**kwargs)  # type: ignore[arg-type]


def test_bad_signature(clusterer: StoryClusterer) -> None:
    with pytest.raises(ValueError):
        clusterer.similarity(b"xyz", clusterer.signature("a b c", ""))


# -- short and title-only items ---------------------------------------------------------------

AGGREGATOR_COPIES = [
    # (an outlet's full story, its aggregator copy as fetched: title with the outlet, link-only text)
    ((KIM_XI_TITLE, KIM_XI), (f"{KIM_XI_TITLE} - Reuters", f"{KIM_XI_TITLE}\xa0\xa0Reuters")),
    ((KIM_XI_TITLE, KIM_XI), (f"{KIM_XI_TITLE} | Yonhap News Agency", "")),
    ((KIM_XI_TITLE, KIM_XI), (f"{KIM_XI_TITLE} (AP)", "")),
    ((SUMMIT_KO_TITLE, SUMMIT_KO), (f"{SUMMIT_KO_TITLE} - 연합뉴스", f"{SUMMIT_KO_TITLE}  연합뉴스")),
    ((SANCTIONS_TITLE, SANCTIONS), (f"{SANCTIONS_TITLE} — The Korea Herald", "[Seoul, Jan 8 (Reuters)] -")),
]


@pytest.mark.parametrize(("full", "copy"), AGGREGATOR_COPIES)
def test_title_only_copies_join_the_full_story_in_either_order(
    clusterer: StoryClusterer, full: tuple[str, str], copy: tuple[str, str]
) -> None:
    a, b = clusterer.sketch(*full), clusterer.sketch(*copy)
    assert set(a.keys) & set(b.keys), "the copy would never be compared with the story"
    assert clusterer.same_story(a, b) and clusterer.same_story(b, a)
    assert clusterer.match_cluster(b, T0, [("full", a, T0)]) == "full"
    assert clusterer.match_cluster(a, T0, [("copy", b, T0)]) == "copy"


@pytest.mark.parametrize(("a", "b"), [
    # distinct stories, one of them title-only: their headlines differ
    ((KIM_XI_TITLE, KIM_XI), ("Kim Jong Un inspects new destroyer at Nampo shipyard - KCNA", "")),
    ((SANCTIONS_TITLE, SANCTIONS), ("UN panel says Iran oil shipments to China continue - Reuters", "")),
    (("North Korea fires ballistic missile - Reuters", ""), ("North Korea fires artillery near border - AP", "")),
    ((SUMMIT_KO_TITLE, ""), (REGULATOR_KO_TITLE, "")),
    # too short a headline to tell anything
    (("Breaking - Reuters", ""), ("Breaking - AP", "")),
])
def test_distinct_title_only_items_stay_apart(clusterer: StoryClusterer, a: tuple[str, str], b: tuple[str, str]) -> None:
    assert not clusterer.same_story(clusterer.sketch(*a), clusterer.sketch(*b))


@pytest.mark.parametrize(("title", "clean"), [
    ("Kim Jong Un arrives in Beijing - Reuters", "Kim Jong Un arrives in Beijing"),
    ("Kim Jong Un arrives in Beijing | Yonhap News Agency", "Kim Jong Un arrives in Beijing"),
    ("Kim Jong Un arrives in Beijing (AP)", "Kim Jong Un arrives in Beijing"),
    ("台湾輸出受注、7月予想上回る62％増 米中が伸び拡大 - ロイター", "台湾輸出受注、7月予想上回る62％増 米中が伸び拡大"),
    ("Kim arrives - Reuters", "Kim arrives - Reuters"),  # what is left would be no headline
    ("Trump-Kim summit ends without a deal", "Trump-Kim summit ends without a deal"),
])
def test_clean_title_drops_an_outlet_name(title: str, clean: str) -> None:
    assert clean_title(title) == clean


def test_clean_title_is_linear_on_a_hostile_headline() -> None:
    hostile = "Kim - " + "x" * 200_000 + " y"
    assert clean_title(hostile).startswith("Kim - xxx")


def test_sketch_keys_are_stable_across_processes() -> None:
    import subprocess
    import sys

    code = ("from newswatch.alerts.match.clustering import StoryClusterer; "
            f"print(StoryClusterer().sketch({KIM_XI_TITLE!r}, {KIM_XI!r}).keys)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str(StoryClusterer().sketch(KIM_XI_TITLE, KIM_XI).keys)


def test_a_word_for_word_copy_is_found_by_its_content_key(tmp_path) -> None:
    from newswatch.alerts.story_clusters import StoryClusters
    from newswatch.storage import open_storage

    clusterer = StoryClusterer()
    clusters = StoryClusters(open_storage(tmp_path / "db.sqlite").alerts)
    original = clusterer.sketch(KIM_XI_TITLE, KIM_XI)
    assert clusterer.content_key(KIM_XI_TITLE, KIM_XI) in original.keys
    clusters.add("wire-1", "wire-1", "wire", original, T0)
    found = clusters.exact_copy(clusterer.content_key(KIM_XI_TITLE, KIM_XI), T0 - timedelta(hours=1))
    assert found is not None and found[0] == "wire-1" and found[1].signature == original.signature
    assert clusters.exact_copy(clusterer.content_key(KIM_XI_TITLE, KIM_XI), T0 + timedelta(hours=1)) is None
    assert clusters.exact_copy(clusterer.content_key(KIM_XI_TITLE + " - Reuters", KIM_XI), T0 - timedelta(hours=1)) is None
