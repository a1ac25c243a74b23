"""MJSynth and the ICDAR 2013 / 2015 word test sets -> SATRN's text-line layout (data.py's).

Training, `train/`: MJSynth (Jaderberg et al. 2014, robots.ox.ac.uk/~vgg/data/text/), the
images `90kDICT32px/<a>/<b>/<n>_<word>_<lexicon index>.jpg` its annotation_train.txt,
annotation_val.txt and annotation_test.txt list (all 8,919,273 when all three are there: the
benchmarks below are the evaluation, as MMOCR trains). src may hold `90kDICT32px/` or the
tarball's `mnt/ramdisk/max/90kDICT32px/`.

Evaluation, `val/`: the word recognition test sets of ICDAR 2013 (`Challenge2_Test_Task3_
Images/`, 1,095 words) and ICDAR 2015 (`ch4_test_word_images_gt/`, 2,077) from rrc.cvc.uab.es,
each with its ground truth (`word_1.png, "text"` per line) as `gt.txt` inside the folder or
as `Challenge2_Test_Task3_GT.txt` / `Challenge4_Test_Task3_GT.txt` inside or beside it.

Images are copied byte for byte once they decode (data.py resizes them to the preset's size
as it reads them); an image that does not decode (MJSynth has a few) is skipped, and so is a
word with a character outside the full config's charset. skipped.txt lists each
(`<split>/<path>`, reason); stderr counts them.

Left out, for want of a text layout of word images: SynthText (its words are boxes in
gt.mat, a MATLAB file, over whole scene images), IIIT5K (labels in .mat files), SVT and
SVTP (word boxes in XML over whole scene images) and CUTE80 (no word-level ground truth file
of its own).
"""

import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from deepspark_core.workload_spec import read_spec
from deepspark_workload.prepare import PrepareError, Progress, done, write_atomic

MJSYNTH = ("90kDICT32px", "mnt/ramdisk/max/90kDICT32px")  # unpacked alone, or the tarball's
MJSYNTH_LISTS = ("annotation_train.txt", "annotation_val.txt", "annotation_test.txt")
ICDAR = {  # output folder: (the images' folder, its ground truth's name)
    "ic13": ("Challenge2_Test_Task3_Images", "Challenge2_Test_Task3_GT.txt"),
    "ic15": ("ch4_test_word_images_gt", "Challenge4_Test_Task3_GT.txt"),
}
GT_LINE = re.compile(r'(?P<image>[^,\s]+),\s*"(?P<text>.*)"')
UNESCAPE = re.compile(r"\\(.)")  # the ground truths write \" and \\

Sample = tuple[Path, str, str]  # source image, its path under the split's folder, text


def convert(src: Path, dst: Path, progress: Progress) -> None:
    charset = set(read_spec(Path(__file__).parent).configs["full"].charset)
    root, lists = find_mjsynth(src)
    evaluation = icdar(src)
    progress.total(sum(count_lines(path) for path in lists) + len(evaluation))
    skipped: list[str] = []  # "<split>/<path>\t<reason>" lines
    for split, samples in {"train": mjsynth(root, lists), "val": iter(evaluation)}.items():

        def write(tmp: Path, split: str = split, samples: Iterator[Sample] = samples) -> None:
            with tmp.open("w", encoding="utf-8") as labels:
                for source, name, text in samples:
                    if reason := copy(source, dst / split / name, text, charset):
                        skipped.append(f"{split}/{name}\t{reason}\n")
                    else:
                        labels.write(f"{name}\t{text}\n")
                    progress.advance()

        write_atomic(dst / split / "labels.txt", write)
    write_atomic(dst / "skipped.txt", lambda tmp: tmp.write_text("".join(skipped)))
    if skipped:
        reasons = Counter(line.rstrip("\n").partition("\t")[2] for line in skipped)
        print(f"skipped {len(skipped)} words: {dict(reasons)} (skipped.txt)", file=sys.stderr)


def copy(source: Path, out: Path, text: str, charset: set[str]) -> str | None:
    """Copy source to out (unless an earlier run did); why not, when it is skipped."""
    if not text:
        return "no text"
    if not set(text) <= charset:
        return "characters outside the charset"
    if done(out):
        return None  # copied only after it decoded
    if not source.is_file():
        raise PrepareError(f"{source} is missing: its ground truth lists it")
    try:
        with Image.open(source) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "does not decode"
    write_atomic(out, lambda tmp: shutil.copyfile(source, tmp))
    return None


def find_mjsynth(src: Path) -> tuple[Path, list[Path]]:
    """MJSynth's folder under src and the annotation lists it holds."""
    for root in (src / p for p in MJSYNTH):
        if lists := [root / name for name in MJSYNTH_LISTS if (root / name).is_file()]:
            return root, lists
    raise PrepareError(f"{src / MJSYNTH[0]}/annotation_train.txt is missing: need MJSynth")


def count_lines(path: Path) -> int:
    with path.open() as f:
        return sum(1 for line in f if line.strip())


def mjsynth(root: Path, lists: list[Path]) -> Iterator[Sample]:
    """The images the lists name, their words from their names, streamed (millions)."""
    for path in lists:
        with path.open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                name = line.split(" ", 1)[0].strip().removeprefix("./")
                word = Path(name).stem.partition("_")[2].rpartition("_")[0]
                if not word:
                    raise PrepareError(
                        f"{path}:{lineno}: expected './<a>/<b>/<n>_<word>_<i>.jpg <i>'"
                    )
                yield root / name, f"mj/{name}", word


def icdar(src: Path) -> list[Sample]:
    """The ICDAR test sets under src (at least one), from their ground truth files."""
    samples = []
    for out, (folder, gt_name) in ICDAR.items():
        images = src / folder
        if not images.is_dir():
            continue
        candidates = (images / "gt.txt", images / gt_name, src / gt_name)
        gt = next((p for p in candidates if p.is_file()), None)
        if gt is None:
            raise PrepareError(f"{images}: no ground truth (gt.txt or {gt_name}) inside or beside")
        samples += [(images / image, f"{out}/{image}", text) for image, text in read_gt(gt)]
    if not samples:
        folders = " or ".join(f"{folder}/" for folder, _ in ICDAR.values())
        raise PrepareError(f"{src} holds no evaluation set: expected {folders}")
    return samples


def read_gt(path: Path) -> list[tuple[str, str]]:
    """An ICDAR word ground truth's `word_1.png, "text"` lines as (image, text)."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        match = GT_LINE.fullmatch(line.strip())
        if not match:
            raise PrepareError(f"{path}:{lineno}: expected 'word_<n>.png, \"<text>\"'")
        out.append((match["image"], UNESCAPE.sub(r"\1", match["text"])))
    return out
