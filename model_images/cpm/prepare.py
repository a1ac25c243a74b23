"""CLUECorpusSmall, the public stand-in for CPM's corpus -> train.bin, val.bin (data.py's uint16
token ids) and vocab.txt, tokenized by characters.

CPM-Large's 100 GB Chinese corpus and its 30,000-piece BPE are not public. CLUECorpusSmall
(CLUECorpus2020's public 14 GB: news, web Q&A, Wikipedia and comments) is; its official layout
is the four zips unpacked under one folder: UTF-8 .txt files, a paragraph a line, a blank line
between documents. Every .txt under the folder is read, in sorted path order.

Vocabulary: <eot> (id 0, after every document), <unk> (id 1), then the corpus's characters by
frequency (ties by code point), the 29,998 most frequent: the full config's 30,000 ids. The rest
become <unk>. vocab.txt holds a token a line, line i being id i; a character that is not
printable is written escaped (a newline as \\n). A document is its lines, stripped and joined by
newlines. Split: every 1,000th document (the 0th, the 1,000th, ...) goes to val.bin, the rest
to train.bin, in corpus order. Two passes: the characters counted (vocab.txt, kept by a rerun),
then the tokens written (train.bin and val.bin, whole or not at all).
"""

import codecs
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from deepspark_workload.prepare import PrepareError, Progress, done, write_atomic, write_atomic_all

VOCAB_SIZE = 30_000  # the full config's vocab_size; ids stay below 0xD800 (see Ids)
VAL_EVERY = 1000
SPECIALS = ["<eot>", "<unk>"]
EOT, UNK = 0, 1


def convert(src: Path, dst: Path, progress: Progress) -> None:
    files = sorted(p for p in src.rglob("*.txt") if p.is_file())
    if not files:
        raise PrepareError(f"{src} holds no .txt files: expected CLUECorpusSmall, unpacked")
    progress.total(2 * len(files))
    vocab_file = dst / "vocab.txt"
    if done(vocab_file):
        vocab = read_vocab(vocab_file)
        progress.advance(len(files))
    else:
        vocab = count_vocab(files, progress)
        write_atomic(vocab_file, lambda tmp: tmp.write_text(vocab_text(vocab), encoding="utf-8"))
    outputs = [dst / "train.bin", dst / "val.bin"]
    if all(map(done, outputs)):
        progress.advance(len(files))
        return
    write_atomic_all(outputs, lambda tmps: write_tokens(files, vocab, tmps, progress))


def documents(files: list[Path], progress: Progress) -> Iterator[str]:
    """Every file's documents: runs of non-blank lines, stripped, joined by newlines."""
    for path in files:
        lines: list[str] = []
        try:
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if line := line.strip():
                        lines.append(line)
                    elif lines:
                        yield "\n".join(lines)
                        lines = []
        except UnicodeDecodeError as exc:
            raise PrepareError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if lines:
            yield "\n".join(lines)
        progress.advance()


def count_vocab(files: list[Path], progress: Progress) -> list[str]:
    counts: Counter[str] = Counter()
    for document in documents(files, progress):
        counts.update(document)
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    return SPECIALS + ranked[: VOCAB_SIZE - len(SPECIALS)]


def vocab_text(vocab: list[str]) -> str:
    lines = [t if t.isprintable() else codecs.encode(t, "unicode_escape").decode() for t in vocab]
    return "".join(line + "\n" for line in lines)


def read_vocab(path: Path) -> list[str]:
    """vocab_text's inverse: a line of one character is itself, a longer one a special or an
    escape."""
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [
        t if len(t) == 1 or t in SPECIALS else codecs.decode(t, "unicode_escape") for t in lines
    ]


class Ids(dict):
    """A str.translate table from characters to the characters whose code points are their
    ids: a document's ids are then its translation in UTF-16-LE, uint16 each (ids below the
    surrogates, 0xD800, encode to themselves). An unknown character translates to <unk>."""

    def __init__(self, vocab: list[str]) -> None:
        super().__init__({ord(c): chr(i) for i, c in enumerate(vocab) if c not in SPECIALS})

    def __missing__(self, code_point: int) -> str:
        return chr(UNK)


def write_tokens(
    files: list[Path], vocab: list[str], outputs: list[Path], progress: Progress
) -> None:
    ids = Ids(vocab)
    with outputs[0].open("wb") as train, outputs[1].open("wb") as val:
        for n, document in enumerate(documents(files, progress)):
            out = val if n % VAL_EVERY == 0 else train
            out.write((document.translate(ids) + chr(EOT)).encode("utf-16-le"))
