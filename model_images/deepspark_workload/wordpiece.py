"""BERT's tokenizer: Google's tokenization.py (BasicTokenizer, then WordpieceTokenizer's greedy
longest-match-first over vocab.txt), reimplemented with the standard library alone.

Basic: drop NUL, U+FFFD and control characters, turn whitespace into spaces, put spaces around
CJK ideographs, split on whitespace; lower-case and strip accents (NFD, combining marks dropped)
when uncased; split off every punctuation character. WordPiece: each word as the longest
vocabulary prefix, then the longest "##"-prefixed continuation, and so on; a word with no such
cover, or over 200 characters, is [UNK].
"""

import re
import unicodedata

from .prepare import PrepareError

UNKNOWN = "[UNK]"
LONGEST_WORD = 200  # characters: a longer word is [UNK] (Google's max_input_chars_per_word)
CACHE = 1 << 20  # words remembered: Wikipedia's words repeat, and a word's pieces never change


class WordPiece:
    def __init__(self, vocab: list[str], lower_case: bool = True) -> None:
        self.ids = {token: i for i, token in enumerate(vocab)}
        if UNKNOWN not in self.ids:
            raise PrepareError(f"the vocabulary lacks {UNKNOWN}")
        self.lower_case = lower_case
        self.cache: dict[str, list[int]] = {}

    def ids_of(self, text: str) -> list[int]:
        """text's token ids."""
        ids: list[int] = []
        for word in basic_tokens(text, self.lower_case):
            pieces = self.cache.get(word)
            if pieces is None:
                if len(self.cache) >= CACHE:
                    self.cache.clear()
                pieces = self.cache[word] = self.pieces(word)
            ids.extend(pieces)
        return ids

    def pieces(self, word: str) -> list[int]:
        """Greedy longest-match-first: one word's WordPiece ids, or [UNK]'s alone."""
        if len(word) > LONGEST_WORD:
            return [self.ids[UNKNOWN]]
        out, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    out.append(self.ids[piece])
                    start = end
                    break
            else:
                return [self.ids[UNKNOWN]]
        return out


def basic_tokens(text: str, lower_case: bool) -> list[str]:
    """BasicTokenizer.tokenize: words and punctuation characters."""
    if text.isascii():  # most of English Wikipedia: the same rules, a few times faster
        return ascii_tokens(text, lower_case)
    return unicode_tokens(text, lower_case)


# ASCII: control characters dropped, tab/newline/return a space; then every printable
# character that is not a letter or digit is punctuation, and there are no accents or CJK.
ASCII_CLEAN = {c: None for c in [*range(32), 127] if chr(c) not in "\t\n\r"} | {
    ord(c): " " for c in "\t\n\r"
}
ASCII_TOKEN = re.compile(r"[0-9A-Za-z]+|[^0-9A-Za-z ]")


def ascii_tokens(text: str, lower_case: bool) -> list[str]:
    text = text.translate(ASCII_CLEAN)
    return ASCII_TOKEN.findall(text.lower() if lower_case else text)


def unicode_tokens(text: str, lower_case: bool) -> list[str]:
    chars = []
    for c in text:
        if c == "\0" or c == "\ufffd" or is_control(c):
            continue
        if is_whitespace(c):
            chars.append(" ")
        elif is_cjk(ord(c)):
            chars.append(f" {c} ")
        else:
            chars.append(c)
    tokens = []
    for word in "".join(chars).split():
        if lower_case:
            word = "".join(
                c for c in unicodedata.normalize("NFD", word.lower())
                if unicodedata.category(c) != "Mn"
            )  # fmt: skip
        tokens.extend(split_punctuation(word))
    return tokens


def split_punctuation(word: str) -> list[str]:
    out, current = [], ""
    for c in word:
        if is_punctuation(c):
            out.extend([current, c] if current else [c])
            current = ""
        else:
            current += c
    return [*out, current] if current else out


def is_whitespace(c: str) -> bool:
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_control(c: str) -> bool:
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf")


def is_punctuation(c: str) -> bool:
    """Unicode punctuation, and every non-letter, non-digit ASCII symbol ("$", "^", "`")."""
    cp = ord(c)
    ascii_symbol = 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
    return ascii_symbol or unicodedata.category(c).startswith("P")


CJK = [
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
]  # fmt: skip


def is_cjk(cp: int) -> bool:
    """A CJK Unified Ideograph (Google's ranges; not Hangul, kana or CJK punctuation)."""
    return any(lo <= cp <= hi for lo, hi in CJK)
