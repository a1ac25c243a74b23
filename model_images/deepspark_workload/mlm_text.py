"""MLPerf BERT's Wikipedia text -> the sequences mlm.read_corpus reads, as Google's
create_pretraining_data.py makes them (MLPerf's settings), unmasked: the BERT workloads (PyTorch
and Paddle) mask afresh every batch.

The official layout (MLPerf Training's BERT `results4` folder, and its `vocab.txt`):

    part-00000-of-00500 .. part-00499-of-00500   text shards: a sentence a line, documents
                                                 separated by a blank line
    eval.txt                                     the held-out documents, the same format
    vocab.txt                                    bert-large-uncased's WordPiece vocabulary

Written: vocab.txt (copied), train/part-XXXXX-of-00500.npy per shard and eval.npy, each (N, 512)
rows "[CLS] A [SEP] B [SEP]" then [PAD], uint16 ids (int32 past 65,536 tokens). Per shard, as
create_pretraining_data.py run on it with MLPerf's max_seq_length 512, short_seq_prob 0.1 and
random_seed 12345: documents shuffled; pairs of segments filling a target length (a shorter
one at random 10% of the time), B being the text that follows A or, half the time, text from
another document; the longer of A and B trimmed at a random end to fit. dupe_factor is 1, not
MLPerf's 10: the copies differed only in their masking, which training now draws every batch.
eval.npy: the first 10,000 sequences of eval.txt's (MLPerf's count of eval sequences).
Shards convert in parallel processes; each is written whole or not at all, and a rerun skips
those already written.
"""

import os
import random
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .prepare import PrepareError, Progress, done, write_atomic
from .wordpiece import WordPiece

SEQ_LEN = 512  # MLPerf's max_seq_length
SHORT_SEQ_PROB = 0.1
SEED = 12345  # MLPerf's random_seed, the same for every shard (one run of the script each)
EVAL_SEQUENCES = 10_000
SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")

Document = list[list[int]]  # sentences of token ids


def convert(src: Path, dst: Path, progress: Progress) -> None:
    shards = sorted(src.glob("part-*-of-*"))
    for need in ("vocab.txt", "eval.txt"):
        if not (src / need).is_file():
            raise PrepareError(f"{src}/{need} is missing: expected MLPerf BERT's results4 text")
    if not shards:
        raise PrepareError(f"{src} holds no part-XXXXX-of-00500 text shards (MLPerf BERT's)")
    vocab(src / "vocab.txt")  # checked before any work
    jobs = [(s, dst / "train" / f"{s.name}.npy", 0) for s in shards]
    jobs.append((src / "eval.txt", dst / "eval.npy", EVAL_SEQUENCES))
    progress.total(len(jobs))
    pending = [job for job in jobs if not done(job[1])]
    progress.advance(len(jobs) - len(pending))
    if pending:
        workers = min(len(pending), len(os.sched_getaffinity(0)))
        # spawn: the caller may hold threads (torch's) that a forked child would inherit locked
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(convert_shard, src / "vocab.txt", *job) for job in pending]
            for future in as_completed(futures):
                future.result()
                progress.advance()
    write_atomic(dst / "vocab.txt", lambda tmp: shutil.copyfile(src / "vocab.txt", tmp))


def vocab(path: Path) -> list[str]:
    """vocab.txt's tokens, line i being id i (BERT's load_vocab: each line stripped)."""
    tokens = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    missing = [t for t in SPECIALS if t not in tokens]
    if missing:
        raise PrepareError(f"{path} lacks {', '.join(missing)}: not a BERT vocabulary")
    return tokens


def convert_shard(vocab_file: Path, source: Path, output: Path, most: int) -> None:
    """One text file's sequences into output (.npy); the first `most` of them, if most > 0."""
    tokens = vocab(vocab_file)
    tokenizer = WordPiece(tokens)
    rng = random.Random(SEED)
    documents = read_documents(source, tokenizer)
    rng.shuffle(documents)
    ids = {t: tokens.index(t) for t in SPECIALS}
    rows = [r for i in range(len(documents)) for r in pairs(documents, i, ids, rng)]
    rng.shuffle(rows)
    rows = rows[:most] if most else rows
    dtype = np.uint16 if len(tokens) <= 1 << 16 else np.int32
    array = np.full((len(rows), SEQ_LEN), ids["[PAD]"], dtype)
    for array_row, row in zip(array, rows, strict=True):
        array_row[: len(row)] = row

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a path would gain np.save's ".npy"
            np.save(f, array)

    write_atomic(output, save)


def read_documents(source: Path, tokenizer: WordPiece) -> list[Document]:
    """The file's documents (blank lines between them), each a list of its non-empty lines'
    token ids; empty documents dropped."""
    documents: list[Document] = [[]]
    try:
        with source.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    documents.append([])
                elif sentence := tokenizer.ids_of(line):
                    documents[-1].append(sentence)
    except UnicodeDecodeError as exc:
        raise PrepareError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [d for d in documents if d]


def pairs(
    documents: list[Document], index: int, ids: dict[str, int], rng: random.Random
) -> Iterator[list[int]]:
    """create_instances_from_document: the sequences "[CLS] A [SEP] B [SEP]" of one document."""
    document, most = documents[index], SEQ_LEN - 3
    target = rng.randint(2, most) if rng.random() < SHORT_SEQ_PROB else most
    chunk: Document = []
    length, i = 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            a = [t for sentence in chunk[:a_end] for t in sentence]
            b: list[int] = []
            if len(chunk) == 1 or rng.random() < 0.5:  # B from another document
                for _ in range(10):
                    other = rng.randint(0, len(documents) - 1)
                    if other != index:
                        break
                sentences = documents[other]
                for sentence in sentences[rng.randint(0, len(sentences) - 1) :]:
                    b.extend(sentence)
                    if len(b) >= target - len(a):
                        break
                i -= len(chunk) - a_end  # the chunk's unused sentences start the next pair
            else:
                b = [t for sentence in chunk[a_end:] for t in sentence]
            trim(a, b, most, rng)
            yield [ids["[CLS]"], *a, ids["[SEP]"], *b, ids["[SEP]"]]
            chunk, length = [], 0
        i += 1


def trim(a: list[int], b: list[int], most: int, rng: random.Random) -> None:
    """truncate_seq_pair: drop tokens from a random end of the longer of a and b until both fit."""
    while len(a) + len(b) > most:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()
