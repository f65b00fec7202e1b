"""Answers in natural words at the confirmation step (and to a proposed default): yes, no, or wait.

`answer_kind(low)` reads a lower-cased message as ``"yes"`` ("응 해줘", "좋아 시작해", "ㅇㅇ",
"go ahead", "sounds good, start", "do it"), ``"no"`` ("아니", "취소해", "don't start", "시작하지
마"), ``"wait"`` ("not yet", "hold on", "잠깐만", "아직이요") or None (a question, a correction,
anything else). The rules, in order:

1. A wait cue anywhere wins ("no wait", "응 근데 잠깐만"): nothing is launched or dropped, the
   question stays open. Waiting is the safe reading of a message that mixes cues.
2. A question ("사전학습 됐어?") is no answer at all. Otherwise a no cue anywhere ("no", "cancel",
   "don't", "never mind", 아니/취소/하지 마/안 해/그만) is a no, except inside a yes phrase ("no
   problem, go ahead").
3. A yes needs a yes cue (a yes word, a go verb in either language, a yes phrase), no question
   mark, and either a yes word or phrase first ("yes, that looks right", "응 그걸로") or nothing
   but yes cues and filler words ("please start the training now", "좋아요 그렇게 해 주세요").
   So "I'd like to start over with another model" is not a yes ("like" and "over" are neither),
   nor "진행 상황 알려줘" (a Korean go verb such as 진행 may be a noun, so it never counts first).
   A contrast or a change ("yes but a different model", "start over", "응 근데 다른 걸로") is no
   plain yes either: the summary is asked about again.

A message whose slots the parser reads ("yes but with 2 epochs", "응 배치 16으로 하고 시작해") is
a correction, not an answer: the state machine (`agent.dialogue.machine`) checks that before it
asks here, merges the slots and shows the corrected summary to confirm again. The confirmation
step itself (summary, launch, waiting) is `agent.dialogue.confirm`.
"""

from __future__ import annotations

import re
import unicodedata

YES, NO, WAIT = "yes", "no", "wait"

# NFKC (the parser's `normalise`) turns the consonants people type alone (ㅇㅇ, ㅇㅋ, ㄱㄱ) into
# leading-consonant jamo; map them back so the patterns below see what was typed
_JAMO_BACK = {ord(unicodedata.normalize("NFKC", chr(c))): chr(c) for c in range(ord("ㄱ"), ord("ㅎ") + 1)}

_PUNCT = re.compile(r"[^\w\s'가-힣ㄱ-ㅎ]+")

# English
_YES_EN_WORDS = {
    "yes", "y", "yeah", "yea", "ya", "yep", "yup", "sure", "ok", "okay", "k", "kk", "alright", "fine",
    "go", "start", "launch", "begin", "proceed", "confirm", "confirmed", "correct", "right", "perfect",
    "great", "absolutely", "definitely", "affirmative", "lgtm", "run", "kick", "train", "certainly",
    "approved", "approve", "agreed", "ack", "roger",
}  # fmt: skip
_YES_EN_PHRASES = re.compile(
    r"\b(?:go ahead|do it|sounds (?:good|great|right|fine)|looks (?:good|great|right|fine)"
    r"|let'?s (?:go|do (?:it|this|that)|start|begin)|ship it|kick it off|fire away|why not|of course"
    r"|no problem|no worries|go for it|make it so|let it run"
    r"|that'?s (?:right|correct|fine|good|it))\b"
)
_FILLER_EN = {
    "please", "pls", "plz", "the", "a", "it", "now", "then", "and", "so", "lets", "let's", "let", "us", "me",
    "just", "ahead", "that", "this", "all", "away", "job", "training", "model", "thanks", "thank", "you",
    "good", "sounds", "looks", "do", "off", "with", "right", "here", "we", "i", "guess", "think", "oh", "well",
    "cool", "nice", "awesome", "yes", "on", "go", "for", "is", "fine", "to", "hmm", "hm", "um", "uh",
}  # fmt: skip
_NO_EN = re.compile(r"\b(?:no|nope|nah|cancel|abort|don'?t|do not|never ?mind|forget it|stop|drop it|not)\b")
_WAIT_EN = re.compile(
    r"\bnot (?:yet|now|right now)\b|\bwait\b|\bhold (?:on|off|it)\b|\bhang on\b|\blater\b"
    r"|\b(?:one|a|just a) (?:sec|second|moment|minute|min)\b|\bgive me a\b|\blet me (?:think|check|see)\b"
)

# Korean (forms are matched per word, so 네트워크 is not 네)
_YES_KO_WORD = re.compile(
    r"^(?:네+|넵|넹|예|옙|예스|응+|웅|ㅇㅇ+|ㅇㅋ+|ㄱㄱ+|고고+|오케이|오키|콜|좋아|좋아요|좋습니다|좋네요?|좋지|좋죠|그래|그래요|"
    r"그러자|그럽시다|그러죠|맞아|맞아요|맞습니다|부탁해요?|부탁합니다|부탁드려요|가자|가즈아|ok|okay|yes)$"
)
_GO_KO = re.compile(
    r"^(?:시작|진행|실행|출발|돌려|고|학습\s?시작|해|시켜)"
    r"(?:해|해요|해줘|해줘요|해\s?주세요|해\s?줄래|하자|합시다|하세요|할게|할게요|하죠|해도 돼|시켜|시켜줘|"
    r"시켜\s?주세요|ㄱ|줘|주세요|요)?$"
)
_FILLER_KO = re.compile(
    r"^(?:그럼|그러면|그렇게|이대로|그대로|이렇게|지금|바로|이제|학습|훈련|학습을|훈련을|주세요|줘|좀|빨리|다|요|음|오|와|"
    r"그|이걸로|그걸로|저걸로|해|해줘|해요|해\s?주세요|네|응|좋아요|ㅎㅎ|ㅋㅋ|감사|감사합니다|고마워|땡큐|진짜|완전|"
    r"한번|한\s?번|가|자|것|거|괜찮아|괜찮아요|괜찮습니다|문제없어|문제없어요|시작|진행)$"
)
_NO_KO = re.compile(
    r"(?:^|\s)(?:아니|아뇨|아니요|아니오|아니야|아니에요|노)(?:\s|$)|취소|싫어|하지\s?마|하지\s?말|말아|말고요?$|그만|"
    r"^됐어|^됐습니다|안\s?(?:할|해|돼|함|하|시작)"
)
# a contrast or a change ("yes but a different model", "start over", "응 근데 다른 걸로"): with no slot
# the parser could read, the message is no plain yes; the question is asked again
_BUT_EN = re.compile(r"\b(?:but|however|though|although|instead|except|over|again|another|different|other|change)\b")
_BUT_KO = re.compile(r"근데|그런데|하지만|그렇지만|대신|말고|다른|바꿔|바꾸|다시")
_WAIT_KO = re.compile(r"잠깐|잠시|기다려|기다리|아직|나중에|이따|좀\s?있다|생각해\s?볼|생각\s?좀|보류|멈춰\s?봐")


def _words(low: str) -> list[str]:
    return _PUNCT.sub(" ", low.translate(_JAMO_BACK)).split()


def answer_kind(low: str) -> str | None:
    """``"yes"``, ``"no"``, ``"wait"`` or None for a lower-cased message (see the module doc)."""
    words = _words(low)
    if not words:
        return None
    text = " ".join(words)
    if _WAIT_EN.search(text) or _WAIT_KO.search(text):
        return WAIT
    if "?" in low:
        return None  # a question ("사전학습 됐어?", "no?"), answered elsewhere
    yes_phrase = _YES_EN_PHRASES.search(text)
    rest = _YES_EN_PHRASES.sub(" ", text) if yes_phrase else text
    if _NO_EN.search(rest) or _NO_KO.search(rest):
        return NO

    def cue(w: str) -> bool:
        return w in _YES_EN_WORDS or bool(_YES_KO_WORD.match(w) or _GO_KO.match(w))

    def filler(w: str) -> bool:
        return w in _FILLER_EN or bool(_FILLER_KO.match(w))

    if not (yes_phrase or any(cue(w) for w in words)) or _BUT_EN.search(rest) or _BUT_KO.search(rest):
        return None
    # a yes word or interjection first ("yes, that looks right", "응 그걸로"); a Korean go verb
    # ("진행") may be a noun there ("진행 상황 알려줘"), so it counts only with the rest below
    if (yes_phrase and yes_phrase.start() == 0) or words[0] in _YES_EN_WORDS or _YES_KO_WORD.match(words[0]):
        return YES
    rest_words = _words(rest)
    return YES if all(cue(w) or filler(w) for w in rest_words) else None
