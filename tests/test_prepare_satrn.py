"""satrn/prepare.py: miniatures of MJSynth and the ICDAR 2013 / 2015 word test sets -> the
text-line layout the full model trains on."""

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from workload_runs import prepare, prepare_fails, prepare_resumes, spec, tiny_preset, train_on

CHARSET = spec("satrn")["configs"]["full"]["charset"]
TINY = tiny_preset(
    data="textlines", target=0.99, image_size=[32, 100], charset=CHARSET,
    model=dict(
        in_channels=3, d_model=16, heads=2, enc_layers=1, enc_inner=32, dec_layers=1,
        dec_inner=32, num_classes=3 + len(CHARSET), max_len=25, n_position=100, dropout=0.0,
    ),
    optim=dict(lr=1e-3, decay_epochs=[], gamma=0.1),
)  # fmt: skip
MJ_WORDS = ["Hello", "WORLD", "tree", "Moniker", "sky", "A4"]


def word_image(path: Path, text: str, suffix: str = ".jpg") -> None:
    image = Image.new("RGB", (12 * len(text) + 8, 32), "white")
    ImageDraw.Draw(image).text((4, 10), text, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path.with_suffix(suffix))


def sources(src: Path) -> None:
    """MJSynth as its tarball unpacks (two annotation lists, one image that does not decode),
    IC13 with gt.txt inside its folder, IC15 with its Challenge4 file beside it (a BOM, an
    escaped quote, a word with a space, outside the charset)."""
    mj = src / "mnt/ramdisk/max/90kDICT32px"
    names = [f"{i // 3 + 1}/{i % 3 + 1}/{i}_{w}_{100 + i}.jpg" for i, w in enumerate(MJ_WORDS)]
    for name, word in zip(names, MJ_WORDS, strict=True):
        word_image(mj / name, word)
    (mj / "7/1").mkdir(parents=True)
    (mj / "7/1/9_broken_42.jpg").write_bytes(b"\xff\xd8\xff")  # cut off after its header
    lines = [f"./{name} {100 + i}\n" for i, name in enumerate(names)]
    (mj / "annotation_train.txt").write_text("".join(lines[:4]) + "./7/1/9_broken_42.jpg 42\n")
    (mj / "annotation_val.txt").write_text("".join(lines[4:]))
    ic13 = src / "Challenge2_Test_Task3_Images"
    for i, word in enumerate(["Tiredness", "kills"], 1):
        word_image(ic13 / f"word_{i}", word, ".png")
    (ic13 / "gt.txt").write_text('word_1.png, "Tiredness"\nword_2.png, "kills"\n')
    ic15 = src / "ch4_test_word_images_gt"
    for i, word in enumerate(['"Home', "two words", "JOINT"], 1):
        word_image(ic15 / f"word_{i}", word, ".png")
    gt = 'word_1.png, "\\"Home"\r\nword_2.png, "two words"\r\nword_3.png, "JOINT"\r\n'
    (src / "Challenge4_Test_Task3_GT.txt").write_text("\ufeff" + gt, encoding="utf-8")


def test_mjsynth_and_icdar_become_text_lines_the_full_model_trains_on(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sources(tmp_path / "src")
    data = tmp_path / "data"
    assert prepare("satrn", tmp_path / "src", data).expected == 7 + 5
    train = (data / "train" / "labels.txt").read_text().splitlines()
    assert [line.split("\t")[1] for line in train] == MJ_WORDS
    assert train[0] == "mj/1/1/0_Hello_100.jpg\tHello"
    mj = tmp_path / "src/mnt/ramdisk/max/90kDICT32px"
    assert (data / "train/mj/1/1/0_Hello_100.jpg").read_bytes() == (
        mj / "1/1/0_Hello_100.jpg"
    ).read_bytes()  # copied as it is: data.py resizes
    val = (data / "val" / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert val == [
        "ic13/word_1.png\tTiredness", "ic13/word_2.png\tkills",
        'ic15/word_1.png\t"Home', "ic15/word_3.png\tJOINT",
    ]  # fmt: skip
    assert (data / "skipped.txt").read_text().splitlines() == [
        "train/mj/7/1/9_broken_42.jpg\tdoes not decode",
        "val/ic15/word_2.png\tcharacters outside the charset",
    ]
    assert "skipped 2 words" in capsys.readouterr().err
    assert not (data / "train/mj/7/1/9_broken_42.jpg").exists()
    train_on("satrn", TINY, data, tmp_path / "run")


def test_a_second_run_redoes_only_what_is_missing(tmp_path: Path) -> None:
    sources(tmp_path / "src")
    prepare_resumes(
        "satrn",
        tmp_path / "src",
        tmp_path / "data",
        "train/mj/1/1/0_Hello_100.jpg",
        "val/ic15/word_3.png",
    )


def test_bad_sources_say_what_is_missing(tmp_path: Path) -> None:
    src = tmp_path / "src"

    def fails(match: str) -> None:
        prepare_fails("satrn", src, match)

    src.mkdir()
    fails("90kDICT32px/annotation_train.txt is missing: need MJSynth")
    sources(src)
    (src / "Challenge4_Test_Task3_GT.txt").unlink()
    fails(r"ch4_test_word_images_gt: no ground truth \(gt.txt or Challenge4_Test_Task3_GT.txt\)")
    (src / "ch4_test_word_images_gt" / "gt.txt").write_text("word_1.png Home\n")
    fails(r"gt.txt:1: expected 'word_<n>.png, \"<text>\"'")
    (src / "ch4_test_word_images_gt" / "gt.txt").write_text('word_9.png, "Home"\n')
    fails(r"word_9.png is missing: its ground truth lists it")
    for folder in ("ch4_test_word_images_gt", "Challenge2_Test_Task3_Images"):
        (src / folder).rename(src / f"{folder}.moved")
    fails("holds no evaluation set: expected Challenge2_Test_Task3_Images/ or ch4_test_word")
    mj = src / "mnt/ramdisk/max/90kDICT32px"
    (mj / "annotation_val.txt").write_text("./1/1/nounderscores.jpg 1\n")
    (src / "Challenge2_Test_Task3_Images.moved").rename(src / "Challenge2_Test_Task3_Images")
    fails(r"annotation_val.txt:1: expected './<a>/<b>/<n>_<word>_<i>.jpg <i>'")
