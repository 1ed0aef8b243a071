"""The matcher: the shipped topics on typical stories, and each scoring rule on a small topic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from newswatch.alerts.match.matcher import Matcher, TopicScore
from newswatch.alerts.match.topics import TopicConfig, expand_optional, normalize, parse_term

CONFIG = Path(__file__).resolve().parents[2] / "config" / "newswatch.yaml"


def shipped_topics() -> dict[str, TopicConfig]:
    raw = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["topics"]
    return {name: TopicConfig.model_validate(body) for name, body in raw.items()}


@pytest.fixture(scope="module")
def shipped() -> Matcher:
    return Matcher(shipped_topics())


def verdicts(matcher: Matcher, title: str, text: str = "") -> dict[str, bool]:
    return {s.topic: s.passed for s in matcher.score(title, text)}


def topic(**overrides: object) -> TopicConfig:
    body: dict[str, object] = {
        "description": "test topic",
        "threshold": 3,
        "groups": {"main": {"weight": 3, "terms": ["summit(s)", "정상회담"]}},
    }
    body.update(overrides)
    return TopicConfig.model_validate(body)


def one(matcher: Matcher, title: str, text: str = "") -> TopicScore:
    return matcher.score(title, text)[0]


def counted_hits(matcher: Matcher, title: str, text: str) -> list[tuple[str, str, str, str]]:
    """(topic, group, term, where) for every counted hit, as `explain` reports them."""
    return [
        (name, c["group"], c["term"], c["where"])
        for name, result in matcher.explain(title, text)["topics"].items()
        for c in result["contributions"]
        for _ in range(c["count"])
    ]


# -- the shipped topics -----------------------------------------------------------------------

SEED_TITLE = "Kim Jong Un visits Xi Jinping in Beijing ahead of possible second summit with Trump"
SEED_TEXT = (
    "North Korean leader Kim Jong Un arrived in Beijing on Tuesday for talks with Chinese "
    "President Xi Jinping, in a visit seen as preparation for a second summit with U.S. "
    "President Donald Trump. Pyongyang is pressing for relief from international sanctions "
    "in return for steps toward denuclearization."
)

SHIPPED_CASES = [
    # (title, text, summit, sanctions, north-korea)
    (SEED_TITLE, SEED_TEXT, True, True, True),
    (
        "G20 summit opens in Rio de Janeiro as leaders debate climate finance",
        "Leaders of the world's largest economies gathered in Brazil for the G20 summit, with "
        "talks on climate finance, trade and a global tax on billionaires.",
        False,
        False,
        False,
    ),
    (
        "EU adopts new sanctions on Russia over the war in Ukraine",
        "The European Union agreed a fresh package of sanctions targeting Russian banks, oil "
        "exports and the shadow fleet of tankers.",
        False,
        False,
        False,
    ),
    (
        "Climbers reach the summit of Everest after a week of storms",
        "A team of climbers stood on the summit of the mountain on Sunday morning.",
        False,
        False,
        False,
    ),
    (
        "금융감독원, 불완전판매 은행에 기관경고 제재",
        "금융감독원은 파생상품을 불완전판매한 은행에 기관경고와 과태료 제재를 내렸다.",
        False,
        False,
        False,
    ),
    (
        "한중 정상회담…이재명 대통령, 시진핑 주석과 공급망 협력 논의",
        "이재명 대통령은 베이징에서 시진핑 중국 국가주석과 정상회담을 갖고 공급망 협력을 논의했다.",
        True,
        False,
        False,
    ),
    (
        "유엔 안보리, 대북제재 위반 선박 4척 추가 지정",
        "유엔 안전보장이사회 대북제재위원회는 북한산 석탄을 불법 환적한 선박 4척을 제재 대상에 올렸다.",
        False,
        True,
        True,
    ),
    (
        "北朝鮮、弾道ミサイル2発を発射",
        "北朝鮮は日本海に向けて弾道ミサイル2発を発射した。",
        False,
        False,
        True,
    ),
    (
        "朝鲜最高领导人金正恩会见俄罗斯外长拉夫罗夫",
        "朝鲜最高领导人金正恩在平壤会见了到访的俄罗斯外长拉夫罗夫，双方举行会谈。",
        True,
        False,
        True,
    ),
    (
        "US Treasury sanctions North Korean IT workers who laundered crypto for Pyongyang",
        "The Treasury Department sanctioned individuals accused of laundering stolen "
        "cryptocurrency to fund North Korea's weapons programmes.",
        False,
        True,
        True,
    ),
    # Headlines as outlets write them: dashes and curly quotes, leaders by name.
    ("Moon–Kim summit set for April 27 at Panmunjom", "", True, False, True),
    ("Trump–Kim summit in Hanoi ends without a deal", "", True, False, True),
    ("President Lee to meet Xi in Beijing next week", "", True, False, False),
    ("Korean Workers’ Party opens plenary meeting", "", False, False, True),
    # Portuguese and Spanish, as Latin American and Iberian outlets write them.
    (
        "Trump e Kim Jong-un terão nova cimeira em Hanói",
        "O presidente norte-americano e o líder da Coreia do Norte vão reunir-se no Vietname.",
        True,
        False,
        True,
    ),
    (
        "EUA impõem novas sanções à Coreia do Norte",
        "O Tesouro anunciou sanções contra empresas acusadas de ajudar Pyongyang a contornar as "
        "restrições da ONU.",
        False,
        True,
        True,
    ),
    (
        "Kim Jong-un y Putin celebran una cumbre en Vladivostok",
        "El líder norcoreano llegó en tren blindado para reunirse con el presidente ruso.",
        True,
        False,
        True,
    ),
    (
        "Cumbre del G20 en Río de Janeiro",
        "Los líderes de las mayores economías se reunieron en Brasil para hablar de comercio.",
        False,
        False,
        False,
    ),
    (
        "La UE aprueba nuevas sanciones contra Rusia",
        "Los ministros acordaron un nuevo paquete de sanciones contra Moscú.",
        False,
        False,
        False,
    ),
    # The Korean press names the South's president by surname: a Korean party, not a reason
    # to alert by itself.
    ("[속보] 이 대통령, 내달 국빈 방미…트럼프 대통령과 정상회담", "", True, False, False),
    ("윤 대통령, 내일 동네 파출소 방문", "", False, False, False),
    ("윤석열 대통령, 광복절 특사 명단 확정", "", False, False, False),  # 특사: a pardon here
    # A party's or a government's own meetings are not talks.
    (
        "Plenary meeting of DPRK cabinet held in Pyongyang",
        "The enlarged plenary meeting discussed the economy; the premier attended the meeting.",
        False,
        False,
        True,
    ),
    ("South Korean national security advisor visits Beijing", "", True, False, False),
    (
        "Kim Jong Un meets women's football team after World Cup win",
        "North Korean leader Kim Jong Un met the players and coaches in Pyongyang.",
        False,
        False,
        True,
    ),
    # "the North" of geography is not North Korea.
    ("Research ship sets out for the North Pole", "", False, False, False),
    ("New sanctions hit Russian oil tankers in the North Sea", "", False, False, False),
    # The kinds of false alert the rubric settles: a cyber-crime with no money for the
    # North's weapons, a launch, a delegation's reception, a statement, an official's remarks,
    # a ministry's schedule and the North in a list of threats.
    (
        "North Korean hackers broke into a South Korean shipbuilder's email servers",
        "Police said hackers linked to North Korea stole design documents from the company "
        "over several months.",
        False,
        False,
        True,
    ),
    (
        "North Korean hackers stole $1.5 million from a South Korean crypto exchange, police say",
        "Police said the Lazarus group hacked the exchange last year and stole cryptocurrency "
        "worth $1.5 million.",
        False,
        False,
        True,
    ),
    (
        "North Korea fires ballistic missile into the sea in breach of UN resolutions",
        "South Korea's military said the launch violated Security Council resolutions that ban "
        "the North's ballistic missile programme.",
        False,
        False,
        True,
    ),
    (
        "North Korea launches spy satellite; Seoul says it violates UN resolutions",
        "The satellite launch defies Security Council resolutions, the foreign ministry said.",
        False,
        False,
        True,
    ),
    (
        "North Korea fires two ballistic missiles; Seoul calls it a violation of UN resolutions",
        "The launches violated Security Council resolutions, the Joint Chiefs of Staff said.",
        False,
        False,
        True,
    ),
    (
        "Reception given for visiting Lao friendship delegation in Pyongyang",
        "A banquet was held for the delegation, which toured the capital and laid a wreath at "
        "the Mansu Hill Grand Monument.",
        False,
        False,
        True,
    ),
    (
        "Russian delegation tours Pyongyang, attends reception",
        "A delegation of the Russian Federation visited the Mangyongdae native house and toured "
        "a factory in Pyongyang. A reception was hosted in its honour.",
        False,
        False,
        True,
    ),
    (
        "DPRK Foreign Ministry spokesperson slams US-South Korea joint drills",
        "In a press statement, the spokesperson said the drills were a rehearsal for invasion.",
        False,
        False,
        True,
    ),
    (
        "South Korean defence minister says North is ready for a nuclear test",
        "The minister told lawmakers that North Korea has finished preparations at its test site "
        "and that Seoul and Washington would respond firmly.",
        False,
        False,
        True,
    ),
    (
        "국방장관 “北, 핵실험 준비 끝나…한미 공조로 단호히 대응”",
        "국방부 장관은 국회 국방위원회에서 북한이 핵실험 준비를 마쳤다고 말했다.",
        False,
        False,
        True,
    ),
    (
        "尹 대통령 “北 핵실험 임박…대응 준비 끝났다”",
        "윤석열 대통령은 출근길에 기자들과 만나 북한이 핵실험 준비를 마쳤다며 강력히 대응하겠다고 "
        "말했다.",
        False,
        False,
        True,
    ),
    (
        "[오늘의 주요일정] 정치(8월 3일 수요일)",
        "▲통일부 장관, 국무회의 참석 ▲국회 본회의 ▲국민의힘 최고위원회의",
        False,
        False,
        False,
    ),
    (
        "여야, 후반기 국회 원구성 합의…상임위원장 18명 선출",
        "국회는 본회의를 열어 외교통일위원회 등 상임위원장을 선출했다. 통일부 업무보고는 다음 주로 "
        "미뤄졌다.",
        False,
        False,
        False,
    ),
    (
        "Pentagon report names China, Russia, Iran and North Korea as top threats",
        "The annual assessment ranks China as the main challenge for the armed forces.",
        False,
        False,
        False,
    ),
    ("Iran and North Korea deepen missile cooperation, report says", "", False, False, True),
    # What must still pass.
    (
        "US Treasury sanctions North Korean bank representatives in China and Russia",
        "OFAC designated eight people who helped Pyongyang reach the international financial "
        "system.",
        False,
        True,
        True,
    ),
    (
        "UN panel finds North Korea evading oil cap through ship-to-ship transfers",
        "The Panel of Experts said tankers delivered refined petroleum to North Korean vessels "
        "at sea.",
        False,
        True,
        True,
    ),
    (
        "Lazarus hackers stole $300 million in crypto to fund North Korea's weapons programme",
        "Investigators said the stolen cryptocurrency was laundered through mixers.",
        False,
        True,
        True,
    ),
    ("Trump says he will meet Kim Jong Un for a summit in Singapore on June 12", "", True, False, True),
    (
        "Kim Jong Un and Putin hold summit at Russian spaceport",
        "The two leaders held talks for four hours at the Vostochny cosmodrome.",
        True,
        False,
        True,
    ),
]


SHIPPED_IDS = [
    "seed-kim-xi-2019",
    "g20-brazil",
    "sanctions-on-russia",
    "mountain-summit",
    "financial-regulator-penalty",
    "korea-china-summit-ko",
    "unsc-ship-designation-ko",
    "missile-launch-ja",
    "kim-meets-lavrov-zh",
    "it-workers-crypto",
    "moon-kim-en-dash",
    "trump-kim-hanoi-en-dash",
    "president-lee-xi",
    "workers-party-curly-quote",
    "trump-kim-summit-pt",
    "nk-sanctions-pt",
    "kim-putin-summit-es",
    "g20-summit-es",
    "sanctions-on-russia-es",
    "president-lee-by-surname-ko",
    "president-yoon-domestic-visit-ko",
    "special-pardon-ko",
    "cabinet-plenary-meeting",
    "security-advisor-visit",
    "kim-meets-football-team",
    "north-pole",
    "north-sea-sanctions",
    "hacking-without-financing",
    "crypto-theft-without-financing",
    "missile-launch-breaching-resolutions",
    "satellite-launch",
    "missile-launch-violating-resolutions",
    "delegation-reception-in-pyongyang",
    "delegation-tour-and-reception",
    "ministry-press-statement",
    "minister-remarks-en",
    "minister-remarks-ko",
    "president-remarks-to-reporters-ko",
    "ministry-schedule-ko",
    "assembly-committees-ko",
    "list-of-threats",
    "north-korea-beside-iran",
    "treasury-designation",
    "un-panel-ship-to-ship",
    "crypto-theft-funding-weapons",
    "trump-kim-summit-announced",
    "kim-putin-summit",
]


@pytest.mark.parametrize(
    ("title", "text", "summit", "sanctions", "nk"), SHIPPED_CASES, ids=SHIPPED_IDS
)
def test_shipped_topics(
    shipped: Matcher, title: str, text: str, summit: bool, sanctions: bool, nk: bool
) -> None:
    assert verdicts(shipped, title, text) == {
        "summit": summit,
        "sanctions": sanctions,
        "north-korea": nk,
    }


def test_shipped_topic_order_and_descriptions() -> None:
    topics = shipped_topics()
    assert list(topics) == ["summit", "sanctions", "north-korea"]
    assert all(t.description for t in topics.values())


def test_seed_story_names_its_terms(shipped: Matcher) -> None:
    summit = shipped.score(SEED_TITLE, SEED_TEXT)[0]
    assert summit.topic == "summit"
    assert "summit" in summit.terms
    assert summit.score >= summit.threshold


# -- term syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expanded"),
    [
        ("summit(s)", ["summit", "summits"]),
        ("visit(s|ed|ing)", ["visit", "visits", "visited", "visiting"]),
        ("North Korea(n)", ["North Korea", "North Korean"]),
        ("plain", ["plain"]),
    ],
)
def test_optional_parts(written: str, expanded: list[str]) -> None:
    assert expand_optional(written) == expanded


def test_normalize_folds_case_width_and_spaces() -> None:
    assert normalize("ＤＰＲＫ  and\nKim") == "dprk and kim"


def test_hyphen_reads_as_space() -> None:
    assert normalize("Kim Jong-un") == "kim jong un"
    assert parse_term("ship-to-ship").patterns == ("ship to ship",)


# -- matching rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "title", "hit"),
    [
        (["summit"], "Summit in Singapore", True),
        (["summit"], "Trump's summitry is unusual", False),
        (["summit*"], "Trump's summitry is unusual", True),
        (["summit"], "The summit's agenda", True),
        (["summit"], "US-Korea summit.", True),
        (["Kim"], "Kimchi exports rise", False),
        (["Kim"], "Kim meets Putin", True),
        (["Kim Jong Un"], "Kim Jong-un arrives", True),
        (["ship-to-ship"], "Ship to ship transfers", True),
        (["朝鲜"], "😀朝鲜外务省", True),
        (["제재"], "😀 대북 제재", True),
        (["Kim Jong Un"], "KIM JONG UN ARRIVES", True),
        (["DPRK"], "ＤＰＲＫ statement", True),
        (["sanction*"], "Sanctioned entities", True),
        (["sanction*"], "Unsanctioned rally", False),
        (["제재"], "대북제재 강화", True),
        (["北朝鮮"], "北朝鮮による発射", True),
        (["朝鲜"], "朝鲜外务省发表声明", True),
        (["word:北"], '北 "한미훈련 중단하라"', True),
        (["word:北"], "北은행가의 정체", True),
        (["word:北"], "北京で会談", False),
        (["word:北"], "東北地方で地震", False),
        (["word:북"], "북, 미사일 발사", True),
        (["word:북"], "강북 아파트값", False),
        (["word:日"], "日 방위백서", True),
        (["word:日"], "２０日に会談", False),
        (["word:이 대통령*"], "[속보] 이 대통령, 중국 국빈방문", True),
        (["word:이 대통령*"], "이 대통령은 시진핑 주석과", True),
        (["word:이 대통령*"], "북한이 대통령 선거를 비난", False),
        (["word:*대통령"], "트럼프 대통령", True),
        (["word:*대통령"], "트럼프 대통령실", False),
        (["*Kim Jong Il*"], "ChairmanKim Jong Ilvisited a farm", True),
        (["*gate"], "Watergate", True),
        (["*gate"], "gateway", False),
        (["re:six[- ]party"], "Six-party talks resume", True),
        (["summit"], "summit북한", True),
    ],
)
def test_term_matching(terms: list[str], title: str, hit: bool) -> None:
    matcher = Matcher({"t": topic(groups={"g": {"weight": 5, "terms": terms}})})
    assert one(matcher, title).passed is hit


def test_ignore_masks_a_longer_phrase() -> None:
    matcher = Matcher(
        {
            "t": topic(
                groups={"g": {"weight": 5, "terms": ["조선"]}},
                ignore=["조선일보", "조선업"],
            )
        }
    )
    assert not one(matcher, "조선일보 단독 보도", "조선업 수주 호조").passed
    assert one(matcher, "조선 외무성 담화").passed


FILLER = "Officials said the economy grew. "  # 33 characters, no term


def test_only_the_lead_of_a_long_text_counts() -> None:
    late = FILLER * 70 + "They will hold a summit."  # the term after 2,310 characters
    early = "They will hold a summit. " + FILLER * 70
    matcher = Matcher({"t": topic()})
    assert not one(matcher, "Economy", late).passed
    assert one(matcher, "Economy", early).passed
    assert one(Matcher({"t": topic(text_chars=0)}), "Economy", late).passed
    assert one(Matcher({"t": topic(text_chars=3000)}), "Economy", late).passed


def test_the_lead_is_cut_between_words() -> None:
    # The 43rd character ends "summit": inside "summitry" in one text, a word in the other.
    matcher = Matcher({"t": topic(text_chars=43)})
    assert not one(matcher, "Economy", FILLER + "Our summitry").passed
    assert one(matcher, "Economy", FILLER + "Our summit talks").passed


def test_topics_read_their_own_length_of_text() -> None:
    text = "A summit. " + FILLER * 3 + "Another summit."
    topics = {
        "short": topic(text_chars=20),
        "all": topic(text_chars=0),
        "middle": topic(text_chars=60, threshold=4),
    }
    matcher = Matcher(topics)
    scores = matcher.score("Economy", text)
    assert [s.topic for s in scores] == ["short", "all", "middle"]
    for name, score in zip(topics, scores, strict=True):
        assert score == one(Matcher({name: topics[name]}), "Economy", text)
    assert [s.score for s in scores] == [3.0, 4.5, 3.0]
    assert [s.passed for s in scores] == [True, True, False]
    explained = matcher.explain("Economy", text)
    assert explained["text_length"] == len(text)
    assert [t["text_chars"] for t in explained["topics"].values()] == [20, 0, 60]


def test_explain_says_how_much_of_the_text_counted() -> None:
    from newswatch.alerts.match.evaluation import format_explanation

    matcher = Matcher({"t": topic(text_chars=100)})
    shown = format_explanation(matcher.explain("Economy", FILLER * 4))
    assert "only the first 100 of the text's 132 characters count (text_chars)" in shown
    assert "text_chars" not in format_explanation(matcher.explain("Economy", FILLER))


def test_nested_hit_counts_once() -> None:
    groups = {
        "summit": {"weight": 3, "terms": ["정상회담"]},
        "talks": {"weight": 2, "terms": ["회담"]},
    }
    matcher = Matcher({"t": topic(groups=groups, threshold=100)})
    explained = matcher.explain("", "한미 정상회담이 열렸다")["topics"]["t"]
    assert [c["term"] for c in explained["contributions"]] == ["정상회담"]


def test_same_words_through_two_terms_of_a_group_count_once() -> None:
    matcher = Matcher({"t": topic(groups={"g": {"weight": 1, "terms": ["summit", "summit*"]}})})
    info = matcher.explain("", "the summit")["topics"]["t"]
    assert sum(c["count"] for c in info["contributions"]) == 1


# -- scoring rules ----------------------------------------------------------------------------


def test_saturation_limits_repetition() -> None:
    matcher = Matcher({"t": topic(threshold=100)})
    once = one(matcher, "", "The summit was held.").score
    twice = one(matcher, "", "The summit was held. The summit ended.").score
    fifty = one(matcher, "", " ".join(["The summit was held."] * 50)).score
    assert once < twice < fifty
    assert fifty <= 2 * once + 1e-9


def test_title_weighs_more_than_text() -> None:
    matcher = Matcher({"t": topic(threshold=100)})
    in_title = one(matcher, "Summit held", "Leaders met.").score
    in_text = one(matcher, "Leaders met", "Summit held.").score
    assert in_title > in_text


def test_proximity_bonus() -> None:
    groups = {
        "summit": {"weight": 2, "terms": ["summit"]},
        "korea": {"weight": 1, "terms": ["North Korea"]},
    }
    near = [{"groups": ["summit", "korea"], "within": 40, "bonus": 3}]
    matcher = Matcher({"t": topic(groups=groups, near=near, threshold=100)})
    filler = " ".join(["weather"] * 40)
    close = one(matcher, "", f"The summit with North Korea. {filler}").score
    far = one(matcher, "", f"The summit. {filler} North Korea.").score
    assert close == pytest.approx(far + 3)
    both_in_title = one(matcher, "North Korea summit", "").score
    assert both_in_title == pytest.approx(2 * 2 + 1 * 2 + 3)


def test_proximity_check_agrees_with_comparing_every_pair() -> None:
    """On spans as a topic counts them (text order, ends increasing), the proximity check
    gives what comparing every pair gives."""
    import random

    from newswatch.alerts.match.matcher import _close

    rnd = random.Random(7)

    def spans() -> list[tuple[int, int, str]]:
        out: list[tuple[int, int, str]] = []
        start, end = -1, 0
        for _ in range(rnd.randint(0, 6)):
            start += rnd.randint(1, 40)
            end = max(start + rnd.randint(1, 15), end + 1)
            out.append((start, end, "term"))
        return out

    for _ in range(5000):
        first, second, within = spans(), spans(), rnd.randint(0, 60)
        every_pair = any(
            max(a[0], b[0]) - min(a[1], b[1]) <= within for a in first for b in second
        )
        assert _close(first, second, within) is every_pair, (first, second, within)


def test_scores_are_rounded_to_four_decimals() -> None:
    import random

    from newswatch.alerts.match.matcher import _rounded

    rnd = random.Random(3)
    weights = [0.5, 1.5, 2.5, 3, -2, 0.1, 0.3, 1 / 3, 0.0625, 0.03125, 1.96875, 1e-5]
    for _ in range(5000):
        parts = [rnd.choice(weights) * rnd.randint(-3, 3) for _ in range(rnd.randint(0, 6))]
        score = sum(parts, 0.0)
        assert _rounded(score) == round(score, 4), score
    groups = {"a": {"weight": 0.1, "terms": ["alpha"]}, "b": {"weight": 0.2, "terms": ["beta"]}}
    scored = one(Matcher({"t": topic(groups=groups, threshold=0.3)}), "", "alpha beta")
    assert isinstance(scored, TopicScore) and scored.score == 0.3 and scored.passed


def test_negative_terms_lower_the_score() -> None:
    groups = {
        "summit": {"weight": 3, "terms": ["summit"]},
        "mountain": {"weight": -4, "terms": ["mountain", "climber(s)"]},
    }
    matcher = Matcher({"t": topic(groups=groups, threshold=4)})
    assert one(matcher, "Summit talks", "").passed
    assert not one(matcher, "Summit reached", "Climbers on the mountain.").passed


def test_required_context() -> None:
    groups = {
        "summit": {"weight": 5, "terms": ["summit"]},
        "korea": {"weight": 0.5, "terms": ["North Korea", "DPRK", "북한"]},
    }
    matcher = Matcher({"t": topic(groups=groups, require=["korea"])})
    without = one(matcher, "G20 summit opens", "")
    assert without.score >= without.threshold
    assert not without.passed
    assert without.missing == ("korea",)
    assert one(matcher, "Summit on North Korea", "").passed
    explained = matcher.explain("G20 summit opens", "")["topics"]["t"]
    assert explained["missing"] == ["korea"] and explained["passed"] is False


def test_require_any_of_several_groups() -> None:
    groups = {
        "summit": {"weight": 5, "terms": ["summit"]},
        "north": {"weight": 0, "terms": ["Pyongyang"]},
        "south": {"weight": 0, "terms": ["Seoul"]},
    }
    matcher = Matcher({"t": topic(groups=groups, require=[["north", "south"]])})
    assert one(matcher, "Summit in Seoul").passed
    assert one(matcher, "Summit in Pyongyang").passed
    assert not one(matcher, "Summit in Rome").passed


def test_score_order_follows_config_and_topics_property() -> None:
    matcher = Matcher({"b": topic(), "a": topic()})
    assert matcher.topics == ["b", "a"]
    assert [s.topic for s in matcher.score("summit", "")] == ["b", "a"]


def test_explain_lists_contributions() -> None:
    matcher = Matcher({"t": topic()})
    info = matcher.explain("Summit", "the summit and summits")["topics"]["t"]
    rows = {(c["term"], c["where"]): c["count"] for c in info["contributions"]}
    assert rows == {("summit(s)", "title"): 1, ("summit(s)", "text"): 2}
    assert info["passed"] is True
    assert info["score"] == pytest.approx(3 * 2 + 3 * 1.5)


def test_empty_story_scores_zero() -> None:
    matcher = Matcher({"t": topic()})
    assert one(matcher, "", "").score == 0


# -- how texts are read: every script, every path -------------------------------------------


@pytest.mark.parametrize(
    ("terms", "title", "hit"),
    [
        (["UN"], "북한UN 대사", True),
        (["UN"], "유엔(UN) 안보리", True),
        (["UN"], "UNSC 회의", False),
        (["UN"], "ДUN", False),
        (["UN"], "Ünun", False),
        (["u.s."], "미국(U.S.) 정부", True),
        (["u.s."], "U.S.-North Korea talks", True),
        (["u.s."], "AU.S. talks", False),
        (["North Korea"], "North-Korea", True),
        (["North Korea"], "North北Korea", False),
        (["sanções"], "Brasil: sanções à Coreia do Norte", True),
        (["sanções"], "Brasil: sançõesx", False),
        (["Kim’s"], "김정은 Kim’s visit", True),
        (["Kim’s"], "Kim’s visit", True),
        (["Kim’s"], "Kim’ss visit", False),
        (["what?"], "北 what? 발언", True),
        (["what?"], "北 what 발언", False),
        (["金正恩"], "김정은(金正恩) 국무위원장", True),
        (["金正恩", "북한"], "金正恩은", True),
        (["word:北"], "😀北 미사일", True),
        (["word:北"], "😀20北", False),
        (["word:북"], "“북” 발표", True),
        (["*Kim Jong Il*"], "위원장Kim Jong Il현지", True),
    ],
)
def test_mixed_scripts(terms: list[str], title: str, hit: bool) -> None:
    matcher = Matcher({"t": topic(groups={"g": {"weight": 5, "terms": terms}})})
    assert one(matcher, title).passed is hit
    assert one(matcher, "", f"앞 {title} 뒤").passed is hit


def test_proximity_counts_characters_in_korean_text() -> None:
    groups = {
        "sanction": {"weight": 2, "terms": ["제재"]},
        "korea": {"weight": 1, "terms": ["북한"]},
    }
    near = [{"groups": ["sanction", "korea"], "within": 40, "bonus": 3}]
    matcher = Matcher({"t": topic(groups=groups, near=near, threshold=100)})
    close = one(matcher, "", f"북한 {'가' * 30} 제재").score  # 32 characters, 96 UTF-8 bytes
    far = one(matcher, "", f"북한 {'가' * 50} 제재").score
    assert close == pytest.approx(far + 3)


def test_text_shortcut_normalizes_like_normalize() -> None:
    import random

    from newswatch.alerts.match.matcher import _folded
    from newswatch.alerts.match.topics import unify_characters

    def _normalized(text: str) -> str:  # as the matcher reads a title or text
        return _folded(text if text.isascii() else unify_characters(text))

    rnd = random.Random(5)
    alphabet = [chr(c) for c in range(128)] + ["  ", "--", " - ", "\r\n"]
    for _ in range(3000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        assert _normalized(text) == normalize(text), repr(text)
    alphabet += [*"–—‐’‘“”ʼ−\xad\ufeff", "북한", "Ｋ", "É", "ß", "😀", "\ud800", "\u200b", "\xa0", "ﬁ"]
    for _ in range(3000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        assert _normalized(text) == normalize(text), repr(text)
    assert _normalized("  Ｋim  Jong-un\t") == normalize("  Ｋim  Jong-un\t")


def test_ascii_view_finds_what_the_normalised_text_holds() -> None:
    """An ASCII story is read from a view of the text as it is, unless normalising it would
    move a character; the hits must be those of its normalised text, position for position.
    (All shipped terms in one matcher: topics that read different lengths of text are scored
    by one matcher per length, and this looks inside one.)"""
    import random

    shipped = Matcher(
        {name: t.model_copy(update={"text_chars": 2000}) for name, t in shipped_topics().items()}
    )

    rnd = random.Random(7)
    words = ["North Korea", "n. korea", "U.S.", "summit", "Kim Jong-un", "Pyongyang, Jan 9",
             "(KCNA)", "president kim il sung", "sanctions", "ship-to-ship", "the", "a"]
    glue = [" ", " ", " ", "-", " - ", "  ", "\t", "\n", "\x07", ".", ", ", "'s "]
    taken = 0
    for _ in range(3000):
        parts = [rnd.choice(words) + rnd.choice(glue) for _ in range(rnd.randint(0, 8))]
        story = "".join(parts)
        if rnd.random() < 0.5:
            story = story.strip(" -\t\n")
        cut = rnd.randint(0, len(story))
        title, text = story[:cut], story[cut:]
        fast = shipped._scan_ascii(title, text)
        title_n = normalize(title)
        slow = shipped._scan(title_n + "\n" + normalize(text), len(title_n))
        if fast is not None:
            taken += 1
            assert fast == slow, (title, text)
    assert taken > 200  # the view of the text as it is was used, not only the general path
    assert shipped._scan_ascii("Kim Jong-un, U.S. talks", "Pyongyang, Jan 9 (KCNA)\nsummit")
    for title, text in [(" Kim", "talks"), ("Kim", "talks -"), ("Kim-", "x"), ("Kim", "\nx"),
                        ("Kim - US", "x"), ("Kim", "a\x07b")]:
        assert shipped._scan_ascii(title, text) is None, (title, text)


def test_typographic_dashes_and_quotes_read_as_ascii() -> None:
    """Outlets write "Trump–Kim", "Kim Jong‐un" and "Workers’ Party"; editors type ASCII."""
    assert normalize("“Kim’s” Trump–Kim — Kim Jong‐un") == '"kim\'s" trump kim kim jong un'
    groups = {"g": {"weight": 5, "terms": ["Trump-Kim", "Workers' Party", "Kim Jong Un"]}}
    matcher = Matcher({"t": topic(groups=groups)})
    for title in ["Trump–Kim talks", "Trump—Kim talks", "the Workers’ Party", "Kim Jong‐un"]:
        assert one(matcher, title).passed, title
    assert not one(matcher, "Trump’s Kim").passed
    assert one(matcher, "\ufeffTrump\u00ad–Kim").passed  # a byte-order mark, a soft hyphen
    assert one(matcher, "Work\u200bers’ Party").passed


@pytest.mark.parametrize(
    ("source", "required"),
    [
        (r"pyongyang, \w+ \d+ \(kcna\)", "pyongyang, "),
        (r"Six[- ]party", "party"),
        (r"kcna|yonhap", None),
        (r"this is", "th"),  # i also matches the dotless ı when case is ignored
        (r"(?x) six \s party", "party"),
        (r"(?:chairman|marshal) ?(?=kim jong)", "m jong"),  # a lookahead's text must be there too
        (r"(?<=chairman )kim", "k"),  # a lookbehind's is not read
        (r"marshal(?!kim jong)", "marshal"),  # nor a negative lookahead's
    ],
)
def test_regex_terms_are_searched_only_where_they_can_match(
    source: str, required: str | None
) -> None:
    from newswatch.alerts.match.matcher import _required_text

    regex = parse_term(f"re:{source}").regex
    assert regex is not None
    assert _required_text(regex) == required


def test_regex_terms_are_searched_where_the_automaton_finds_their_piece() -> None:
    """A regular expression is run only where the view automaton finds a piece of text its
    matches hold; a piece it cannot show, or that a term's key already is, is searched for."""
    dateline = r"re:pyongyang, \w+ \d+ \(kcna\)"
    matcher = Matcher(
        {
            "d": topic(groups={"g": {"weight": 5, "terms": [dateline]}}),
            "a": topic(groups={"g": {"weight": 5, "terms": ["*kcna*"]},
                               "h": {"weight": 5, "terms": [r"re:\bkcna\b"]}}),
            "k": topic(groups={"g": {"weight": 5, "terms": ["re:조선중앙(통신|tv)"]}}),
        }
    )
    agency = {("a", "*kcna*"), ("a", r"re:\bkcna\b")}
    for text, expected in [
        ("Pyongyang, Jan 5 (KCNA) -- said", {("d", dateline), *agency}),
        ("평양 Pyongyang, Jan 5 (KCNA) 발", {("d", dateline), *agency}),
        ("Pyongyang; Jan 5 (KCNA)", agency),
        ("Pyongyang, Jan 5 (kcnaX)", {("a", "*kcna*")}),
        ("조선중앙통신 보도, 조선중앙TV", {("k", "re:조선중앙(통신|tv)")}),
        ("", set()),
    ]:
        assert {(t, term) for t, _, term, _ in counted_hits(matcher, "", text)} == expected, text


def test_regex_term_matches_dotless_i() -> None:
    matcher = Matcher({"t": topic(groups={"g": {"weight": 5, "terms": ["re:this is"]}})})
    assert one(matcher, "THIS IS it").passed
    assert one(matcher, "thıs ıs it").passed
    assert not one(matcher, "that is it").passed


def test_score_agrees_with_explain(shipped: Matcher) -> None:
    stories = [
        (SEED_TITLE, SEED_TEXT),
        (
            "北 미사일 발사",
            "북한이 20일 탄도미사일을 발사했다. 대북제재 위반이라고 한미 정상회담에서 밝혔다.",
        ),
        ("", "Pyongyang, Jan 5 (KCNA) -- The DPRK said sanctions on North Korea must end."),
    ]
    for title, text in stories:
        explained = shipped.explain(title, text)["topics"]
        for result in shipped.score(title, text):
            assert result.score == explained[result.topic]["score"]
            assert result.passed is explained[result.topic]["passed"]
            assert list(result.missing) == explained[result.topic]["missing"]


# -- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": -1}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"colour": "red"}, "colour"),
        ({"groups": {"g": {"terms": ["re:(unclosed"]}}}, "groups.g.terms.0"),
        ({"groups": {"g": {"terms": ["ok", "re:a*"]}}}, "groups.g.terms.1"),
        ({"groups": {"g": {"terms": ["sanc*tion"]}}}, "groups.g.terms.0"),
        ({"groups": {"g": {"terms": ["제재*"]}}}, "groups.g.terms.0"),
        ({"groups": {"g": {"terms": ["word:*제재*"]}}}, "groups.g.terms.0"),
        ({"groups": {"g": {"terms": ["word:summit*"]}}}, "groups.g.terms.0"),
        ({"groups": {"g": {"terms": ["visit(s"]}}}, "groups.g.terms.0"),
        ({"groups": {"g": {"terms": [""]}}}, "groups.g.terms.0"),
        ({"groups": {"g": {"terms": []}}}, "groups.g.terms"),
        ({"groups": {"g": {"terms": ["a", "a"]}}}, "groups.g.terms"),
        ({"groups": {"g": {"terms": ["a"], "weight": "heavy"}}}, "groups.g.weight"),
        ({"groups": {"g": {"terms": ["a"], "colour": 1}}}, "groups.g.colour"),
        ({"groups": {}}, "groups"),
        ({"require": ["nowhere"]}, "require"),
        ({"near": [{"groups": ["main", "nowhere"], "bonus": 1}]}, "near"),
        ({"near": [{"groups": ["main", "main"], "bonus": 0}]}, "near.0.bonus"),
        ({"text_chars": -1}, "text_chars"),
        ({"text_chars": True}, "text_chars"),
        ({"text_chars": "2000"}, "text_chars"),
    ],
)
def test_bad_config_is_an_error(overrides: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        topic(**overrides)
    locations = {".".join(str(p) for p in error["loc"]) for error in caught.value.errors()}
    assert where in locations


def test_bad_regex_message_is_clear() -> None:
    with pytest.raises(ValidationError, match="does not compile"):
        topic(groups={"g": {"terms": ["re:(unclosed"]}})


def test_matcher_needs_a_topic() -> None:
    with pytest.raises(ValueError):
        Matcher({})


# -- evaluation -------------------------------------------------------------------------------


def test_evaluate_counts_and_skips_unsure() -> None:
    from newswatch.alerts.match.evaluation import evaluate, format_eval_report

    matcher = Matcher({"t": topic(), "u": topic()})
    rows = [
        {"id": "1", "title": "Summit opens", "text": "", "t": 1},  # tp
        {"id": "2", "title": "Summit opens", "text": "", "t": 0},  # fp
        {"id": "3", "title": "Weather", "text": "", "t": 1},  # fn
        {"id": "4", "title": "Weather", "text": "", "t": 0},  # tn
        {"id": "5", "title": "Summit opens", "text": "", "t": 0, "unsure": True},
    ]
    result = evaluate(matcher, rows)
    assert set(result["topics"]) == {"t"}  # "u" has no labels in the rows
    assert result["topics"]["t"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "tp": 1,
        "fp": 1,
        "fn": 1,
        "positives": 2,
    }
    assert result["skipped_unsure"] == 1 and result["stories"] == 4
    assert [e["id"] for e in result["false_positives"]["t"]] == ["2"]
    assert [e["id"] for e in result["false_negatives"]["t"]] == ["3"]
    report = format_eval_report(result)
    assert "precision" in report and "Weather" in report


@pytest.mark.parametrize(
    ("origin", "group"),
    [
        ("feeds/newsis-politics-knewsrss-20220723.xml", "feeds/newsis"),
        ("feeds/newsis-international-knewsrss-20220730.xml", "feeds/newsis"),
        ("datasets/nytimes-articles-april2018.csv", "datasets/nytimes-articles-april2018"),
        ("datasets/world-headlines-2021-11-to-2022-07-fwd.json", "datasets/world-headlines"),
        ("extra/baram-001_0015821308.txt", "extra/baram"),
        ("extra/rss23-2023-04-25-https.www.theguardian.comrss.json", "extra/rss23"),
        ("extra/g5w-sanctions-oil-1a84923a92.json", "extra/g5w-sanctions-oil"),
        ("mylabels.jsonl", "mylabels"),
    ],
)
def test_origin_groups_hold_out_a_whole_source(origin: str, group: str) -> None:
    from newswatch.alerts.match.evaluation import origin_group

    assert origin_group(origin) == group


@pytest.mark.parametrize(
    ("row", "language"),
    [
        ({"lang": "en-US", "title": "x"}, "en"),
        ({"lang": "pt-pt", "title": "x"}, "pt"),
        ({"lang": "", "title": "북한, 미사일 발사"}, "ko"),
        ({"lang": "mul", "title": "北朝鮮、ミサイル発射"}, "ja"),
        ({"lang": "", "title": "朝鲜发射导弹"}, "zh"),
        ({"lang": "", "title": "Coreia do Norte lança míssil", "text": "O lançamento"}, "pt"),
        ({"title": "North Korea fires missile"}, "en"),
        ({"title": "…"}, "other"),
    ],
)
def test_story_language_from_the_field_or_the_script(row: dict[str, str], language: str) -> None:
    from newswatch.alerts.match.evaluation import story_language

    assert story_language(row) == language


@pytest.mark.parametrize(
    ("published", "day"),
    [
        ("2018-04-28 15:35:15", "2018-04-28"),
        ("2022-07-22T23:23:24.000Z", "2022-07-22"),
        ("Wed, 19 Aug 2026 07:05:50 +0000", "2026-08-19"),
        ("June 27, 2022 8:17 AM", "2022-06-27"),
        ("1728259200000", "2024-10-07"),
        ("", None),
        ("soon", None),
    ],
)
def test_published_dates_in_the_forms_label_files_hold(published: str, day: str | None) -> None:
    from newswatch.alerts.match.evaluation import published_at

    moment = published_at({"published": published})
    assert (moment.date().isoformat() if moment else None) == day


def test_cross_validation_reports_each_part_beside_the_baselines() -> None:
    from newswatch.alerts.match.evaluation import cross_validate, format_cv_report

    matcher = Matcher({"t": topic()})
    rows = [
        {"title": "Summit opens", "t": 1, "origin": "feeds/a-x-1.xml", "published": "2020-01-01"},
        {"title": "Summit opens", "t": 0, "origin": "feeds/a-y-2.xml", "published": "2020-01-02"},
        {"title": "정상회담 열려", "t": 1, "origin": "feeds/b-x-1.xml", "published": "2021-01-01"},
        {"title": "Weather", "t": 1, "origin": "feeds/b-x-2.xml", "published": "2021-01-02"},
        {"title": "Weather", "t": 0, "origin": "feeds/b-x-3.xml", "published": ""},
        {"title": "Summit opens", "t": 0, "origin": "feeds/b-x-3.xml", "unsure": True},
    ]
    baselines = {"t": [("says summit", lambda r: "summit" in r["title"].lower())]}
    result = cross_validate(matcher, rows, split="origin", baselines=baselines)
    assert result["stories"] == 5 and result["skipped_unsure"] == 1
    parts = {(p["kind"], p["name"]): p["topics"]["t"] for p in result["parts"]}
    assert parts["all", "all"] | {"baselines": None} == {
        "n": 5, "positives": 3, "tp": 2, "fp": 1, "fn": 1,
        "precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "baselines": None,
    }  # fmt: skip
    assert parts["all", "all"]["baselines"] == [0.4]
    assert parts["language", "en"]["n"] == 4 and parts["language", "ko"]["tp"] == 1
    assert parts["origin", "feeds/a"]["fp"] == 1 and parts["origin", "feeds/b"]["fn"] == 1

    by_time = cross_validate(matcher, rows, split="time", folds=2, baselines=baselines)
    slices = [p for p in by_time["parts"] if p["kind"] == "time"]
    assert [(p["name"], p["first"], p["last"], p["topics"]["t"]["n"]) for p in slices] == [
        ("1 of 2", "2020-01-01", "2020-01-02", 2),
        ("2 of 2", "2021-01-01", "2021-01-02", 2),
        ("undated", None, None, 1),
    ]
    report = format_cv_report(by_time)
    assert "time 1 of 2: 2020-01-01..2020-01-02" in report and "B1 = says summit" in report
    with pytest.raises(ValueError):
        cross_validate(matcher, rows, split="topic")


def test_eval_cv_command_prints_the_table(tmp_path: Path) -> None:
    import subprocess
    import sys

    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        '{"title": "Kim Jong Un and Xi hold summit in Beijing", "summit": 1, "origin": "feeds/a-1.xml"}\n'
        '{"title": "Weather", "summit": 0, "origin": "feeds/b-1.xml", "lang": "en"}\n',
        "utf-8",
    )
    for args in (["--cv", "origin"], ["--cv", "time", "--folds", "2", "--min-positives", "1"]):
        proc = subprocess.run(
            [sys.executable, "-m", "newswatch.cli", "eval", str(labels), "-c", str(CONFIG), *args],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "summit  (baselines: B1 = contains summit" in proc.stdout
        assert "lang en" in proc.stdout
    assert "feeds/a" in subprocess.run(
        [sys.executable, "-m", "newswatch.cli", "eval", str(labels), "-c", str(CONFIG), "--cv", "origin"],
        capture_output=True, text=True, timeout=60,
    ).stdout


def test_load_labels_reports_file_and_line(tmp_path: Path) -> None:
    from newswatch.alerts.match.evaluation import LabelFileError, load_labels

    good = tmp_path / "good.jsonl"
    good.write_text('{"title": "a", "t": 1}\n\n{"title": "b", "text": "x", "t": 0}\n', "utf-8")
    assert [r["title"] for r in load_labels(good)] == ["a", "b"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "a"}\n{"title": \n', "utf-8")
    with pytest.raises(LabelFileError, match=r"bad\.jsonl:2: not valid JSON"):
        load_labels(bad)
    no_title = tmp_path / "no_title.jsonl"
    no_title.write_text('{"text": "a"}\n', "utf-8")
    with pytest.raises(LabelFileError, match=r"no_title\.jsonl:1: 'title'"):
        load_labels(no_title)
    with pytest.raises(LabelFileError, match="cannot open"):
        load_labels(tmp_path / "missing.jsonl")

    # A byte-order mark and Windows line ends are read; other encodings and label values are
    # errors naming the file and line.
    windows = tmp_path / "windows.jsonl"
    windows.write_bytes(b'\xef\xbb\xbf{"title": "a", "t": 1}\r\n\r\n{"title": "b", "t": 0}\r\n')
    assert [r["title"] for r in load_labels(windows)] == ["a", "b"]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"title": "a"}\n{"title": "caf\xe9"}\n')
    with pytest.raises(LabelFileError, match=r"latin\.jsonl:2: not UTF-8 \(byte 0xe9 at column 15\)"):
        load_labels(latin)


def test_eval_and_explain_commands_report_bad_input_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad_label = tmp_path / "labels.jsonl"
    bad_label.write_text('{"title": "Kim meets Xi", "summit": 1}\n{"title": "b", "summit": 2}\n', "utf-8")
    latin_story = tmp_path / "story.txt"
    latin_story.write_bytes(b"Caf\xe9 summit\n")
    for args, message in [
        (["eval", str(bad_label)], f"newswatch eval: {bad_label}:2: 'summit' must be 0 or 1, got 2"),
        (["explain", str(latin_story)], f"newswatch explain: {latin_story}: not UTF-8 (byte 4)"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "newswatch.cli", *args, "-c", str(CONFIG)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode in (1, 2), proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    """`newswatch eval ... | head -1`: the pipe closes before the report is written."""
    import subprocess
    import sys

    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"title": "Kim Jong Un meets Xi", "summit": 1}\n' * 50, "utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "newswatch.cli", "eval", str(labels), "-c", str(CONFIG)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command has written anything: it starts in ~1 s
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_bad_label_value_names_the_file_and_line(tmp_path: Path) -> None:
    from newswatch.alerts.match.evaluation import LabelFileError, evaluate, load_labels

    path = tmp_path / "labels.jsonl"
    path.write_text('{"title": "a", "t": 1}\n{"title": "b", "t": "yes"}\n', "utf-8")
    with pytest.raises(LabelFileError, match=r"labels\.jsonl:2: 't' must be 0 or 1, got 'yes'"):
        evaluate(Matcher({"t": topic()}), load_labels(path))


def test_format_explanation_is_readable() -> None:
    from newswatch.alerts.match.evaluation import format_explanation

    groups = {
        "summit": {"weight": 3, "terms": ["summit"]},
        "korea": {"weight": 1, "terms": ["North Korea"]},
    }
    matcher = Matcher({"t": topic(groups=groups, require=["korea"])})
    text = format_explanation(matcher.explain("G20 summit opens", ""))
    assert "t: no" in text and "summit" in text and "missing required: korea" in text


# -- against the rules as written: a slow reference on random texts ---------------------------

ORACLE_TOPICS = {
    "first": {
        "groups": {
            "words": ["North Korea(n)", "Kim", "UN", "u.s.", "Kim's visit", "sanções", "łódź"],
            "open": ["sanction*", "*gate", "*Kim Jong Il*"],
            "wide": ["제재", "북한", "word:北", "金正恩", "re:six ?party"],
        },
        "ignore": ["Kim Jong Un", "북한산", "korea bank"],
    },
    "second": {
        "groups": {
            "korea": ["Korea", "North Korea", "북한", "word:북"],
            "talks": ["talks", "UN", "re:\\bkcna\\b"],
        },
    },
}
ORACLE_PIECES = [
    "North", "Korea", "korean", "Kim", "kim's", "KIM’s", "visit", "UN", "un", "U.S.", "u.s",
    "us", "sanção", "sanções", "łódź", "lodz", "sanction", "Sanctions", "watergate", "gate",
    "kimjongil", "Kim Jong Il", "Kim Jong-un", "jong", "제재", "대북제재", "북한", "북한산", "北",
    "北京", "金正恩", "북", "강북", "six party", "six-party", "sixparty", "KCNA", "kcnas", "talks",
    "bank", "Д", "é", "ß", "😀", "7", "20", "the", "and",
]
ORACLE_GLUE = [" ", " ", " ", "  ", "-", ", ", ".", "'", "’", "(", ")", "\n", "", "", "x", "가", "中"]


def _oracle_glued(char: str, need: int) -> bool:
    from newswatch.alerts.match.topics import LATIN, script

    if not char.isalnum():
        return False
    if need == LATIN:
        return char < "\u1100"
    return char.isdigit() or script(char) == need


def _oracle_hits(topics: dict[str, TopicConfig], title: str, text: str) -> list[tuple[str, str, str, str]]:
    """(topic, group, label, where) for every counted hit, by the documented rules, slowly."""
    import re

    from newswatch.alerts.match.topics import script

    out = []
    for where, field in (("title", title), ("text", text)):
        norm = normalize(field)
        for name, config in topics.items():
            raw = []  # (start, end, group or None for ignore, label)
            sources = [(g, t) for g in config.groups for t in config.groups[g].terms]
            sources += [(None, t) for t in config.ignore]
            for group, written in sources:
                term = parse_term(written)
                if term.regex is not None:
                    raw += [(m.start(), m.end(), group, written) for m in term.regex.finditer(norm)]
                    continue
                for pattern in term.patterns:
                    left = script(pattern[0]) if term.kind in ("word", "prefix", "standalone") else 0
                    right = script(pattern[-1]) if term.kind in ("word", "suffix", "standalone") else 0
                    for m in re.finditer(f"(?={re.escape(pattern)})", norm):
                        start, end = m.start(), m.start() + len(pattern)
                        if left and start > 0 and _oracle_glued(norm[start - 1], left):
                            continue
                        if right and end < len(norm) and _oracle_glued(norm[end], right):
                            continue
                        raw.append((start, end, group, written))
            ignored = [(s, e) for s, e, g, _ in raw if g is None]
            kept = [h for h in raw if h[2] is not None and not any(s <= h[0] and h[1] <= e for s, e in ignored)]
            counted: set[tuple[int, int, str]] = set()
            for start, end, group, label in sorted(set(kept), key=lambda h: (h[0], -h[1], h[2], h[3])):
                inside = any(
                    s <= start and end <= e and (s, e) != (start, end) for s, e, _, _ in kept
                )
                if inside or (start, end, group) in counted:
                    continue
                counted.add((start, end, group))
                out.append((name, group, label, where))
    return sorted(out)


def test_hits_follow_the_written_rules_on_random_texts() -> None:
    import random

    topics = {
        name: TopicConfig.model_validate({"description": name, "threshold": 1, **body})
        for name, body in ORACLE_TOPICS.items()
    }
    matcher = Matcher(topics)
    rnd = random.Random(11)
    checked = 0
    for round_ in range(1500):
        ascii_only = round_ % 2 == 0
        pieces = [p for p in ORACLE_PIECES if p.isascii()] if ascii_only else ORACLE_PIECES
        glue = [g for g in ORACLE_GLUE if g.isascii()] if ascii_only else ORACLE_GLUE
        text = "".join(rnd.choice(pieces) + rnd.choice(glue) for _ in range(rnd.randint(1, 12)))
        title = "".join(rnd.choice(pieces) + rnd.choice(glue) for _ in range(rnd.randint(0, 3)))
        got = sorted(counted_hits(matcher, title, text))
        assert got == _oracle_hits(topics, title, text), (title, text)
        checked += bool(got)
    assert checked > 1000  # most texts hold hits


def test_lone_surrogates_and_emoji_are_read_not_fatal() -> None:
    """Text decoded with surrogateescape can hold lone surrogates; they cannot be encoded."""
    matcher = Matcher({"t": topic(groups={"g": {"weight": 5, "terms": ["북한", "North Korea"]}})})
    assert one(matcher, "북한 \ud800 발표").passed
    assert one(matcher, "", "North Korea \udcff 😀 says").passed
    assert normalize("a\ud800b😀") == "a\ufffdb\ufffd"


def test_matched_is_score_without_the_topics_that_have_no_hits(shipped: Matcher) -> None:
    stories = [(SEED_TITLE, SEED_TEXT), ("Weather", "Sunny in Seoul"), ("", "")]
    stories += [(case[0], case[1]) for case in SHIPPED_CASES]
    for title, text in stories:
        full = shipped.score(title, text)
        hit = {name for name, *_ in counted_hits(shipped, title, text)}
        matched = shipped.matched(title, text)
        assert matched == [s for s in full if s.topic in hit], title
        assert [s.topic for s in matched if s.passed] == [s.topic for s in full if s.passed]
    many = Matcher(
        {f"w{i}": topic(groups={"g": {"weight": 5, "terms": [f"word{i}"]}}) for i in range(300)}
    )
    assert [s.topic for s in many.matched("", "word250 and word7, word250")] == ["w7", "w250"]
    assert [s.topic for s in many.score("", "word250")][:2] == ["w0", "w1"]


# -- bounded optional parts ---------------------------------------------------------------------

HOSTILE_TERM = "x(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)(s|t)"  # 3^10 = 59,049 forms

FORM_COUNTS = [
    # (term, forms counted before expanding, forms after expanding or None when refused)
    ("plain", 1, 1),
    ("summit(s)", 2, 2),
    ("visit(s|ed|ing)", 4, 4),
    ("norte-corean(o|os|a|as)", 5, 5),
    ("a(b(c|d))", 6, 4),  # nested: an upper bound; "a" comes out three times
    ("(a|b)(c|d)(e|f)(g|h)(i|j)", 243, 243),
    ("x(a)(b)(c)(d)(e)(f)(g)(h)", 256, 256),  # the most a term may stand for
    ("x(a)(b)(c)(d)(e)(f)(g)(h)(i)", 512, None),
    (HOSTILE_TERM, 59_049, None),
    ("x" + "(a|b)" * 40, 3**40, None),  # would never finish expanding
]


@pytest.mark.parametrize(("term", "counted", "expanded"), FORM_COUNTS)
def test_forms_are_counted_before_expanding(term: str, counted: int, expanded: int | None) -> None:
    from newswatch.alerts.match.topics import MAX_TERM_FORMS, TooManyForms, count_forms

    assert count_forms(term) == counted
    if expanded is None:
        with pytest.raises(TooManyForms) as caught:
            expand_optional(term)
        assert f"{counted:,} forms" in str(caught.value)
        assert f"at most {MAX_TERM_FORMS}" in str(caught.value)
    else:
        forms = expand_optional(term)
        assert len(forms) == expanded == len(set(forms))


@pytest.mark.parametrize("term", [HOSTILE_TERM, f"*{HOSTILE_TERM}*", "word:북" + "(한|측)" * 9])
def test_a_term_with_too_many_forms_is_refused_with_its_name(term: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_term(term)
    assert term in str(caught.value) and "forms" in str(caught.value)


@pytest.mark.parametrize("term", ["summit(", "summit)", "a)b(c", "a((b)"])
def test_unbalanced_parentheses_are_refused_before_counting(term: str) -> None:
    with pytest.raises(ValueError, match="unbalanced parentheses"):
        parse_term(term)


# -- invisible characters -----------------------------------------------------------------------

INVISIBLE = [
    ("\u200c", "zero-width non-joiner"),
    ("\u200d", "zero-width joiner"),
    ("\u200e", "left-to-right mark"),
    ("\u200f", "right-to-left mark"),
    ("\u2063", "invisible separator"),
    ("\u2066", "left-to-right isolate"),
    ("\u202a", "left-to-right embedding"),
    ("\u034f", "combining grapheme joiner"),
    ("\u180e", "Mongolian vowel separator"),
    ("\ufe0f", "variation selector 16"),
    ("\ufe00", "variation selector 1"),
    ("\U000e0100", "variation selector 17"),
    ("\U000e0041", "tag letter"),
    ("\u3164", "Hangul filler"),
    ("\uffa0", "half-width Hangul filler"),
    ("\u115f", "Hangul choseong filler"),
    ("\u00ad", "soft hyphen"),
    ("\u200b", "zero-width space"),
    ("\ufeff", "byte-order mark"),
]


@pytest.mark.parametrize(("char", "name"), INVISIBLE)
def test_invisible_characters_inside_words_are_dropped(char: str, name: str) -> None:
    matcher = Matcher({"t": topic(groups={"main": {"weight": 3, "terms": ["sanctions", "North Korea", "북한"]}})})
    for title in (f"New sanc{char}tions", f"North Kor{char}ea", f"North{char} Korea", f"{char}북{char}한{char}"):
        assert one(matcher, title).passed, (name, title)
        assert one(matcher, "", f"Officials said. {title} today").passed, (name, title)
    assert normalize(f"Pyong{char}yang") == "pyongyang"


def test_a_braille_blank_reads_as_a_space() -> None:
    matcher = Matcher({"t": topic(groups={"main": {"weight": 3, "terms": ["North Korea"]}})})
    assert normalize("North\u2800Korea") == "north korea"
    assert one(matcher, "North\u2800Korea warns").passed


def test_the_invisible_table_covers_every_format_character() -> None:
    import unicodedata

    from newswatch.alerts.match.topics import INVISIBLE_RANGES

    covered = {code for low, high in INVISIBLE_RANGES for code in range(low, high + 1)}
    format_characters = {code for code in range(0x110000) if unicodedata.category(chr(code)) == "Cf"}
    assert format_characters <= covered, sorted(hex(c) for c in format_characters - covered)
    assert all(normalize(f"a{chr(code)}b") == "ab" for code in sorted(covered))


def test_invisible_characters_leave_composed_letters_composed() -> None:
    assert normalize("Cafe\u200d\u0301 talks") == normalize("Café talks") == "café talks"


# -- long titles --------------------------------------------------------------------------------


def test_only_the_first_thousand_characters_of_a_title_are_read() -> None:
    from newswatch.alerts.match.matcher import TITLE_CHARS

    matcher = Matcher({"t": topic()})
    filler = "word " * (TITLE_CHARS // 5)
    assert one(matcher, "summit " + filler).passed
    assert not one(matcher, filler + " summit").passed
    assert one(matcher, "x" * 1_000_000).score == 0
