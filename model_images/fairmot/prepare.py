"""MOT17 from its official layout to the one data.py reads: each sequence once.

    SRC/train/MOT17-02-{DPM,FRCNN,SDP}/{img1/*.jpg, gt/gt.txt, seqinfo.ini}
        ->  DST/train/MOT17-02-DPM/{img1/*.jpg, gt/gt.txt, seqinfo.ini}

MOT17 ships every sequence three times, once per public detector, with the same frames and
ground truth; training uses neither the detections (det/) nor the copies, so the first
variant of each sequence is kept (a third of the download). SRC may also be the folder that
holds MOT17/. Files are hard-linked where the filesystem allows, otherwise copied.
"""

from pathlib import Path

from deepspark_workload.prepare import PrepareError, Progress, link_all


def convert(src: Path, dst: Path, progress: Progress) -> None:
    train = src / "train" if (src / "train").is_dir() else src / "MOT17" / "train"
    sequences: dict[str, Path] = {}
    for seq in sorted(train.glob("MOT17-*")):
        sequences.setdefault(seq.name.rsplit("-", 1)[0], seq)  # MOT17-02: its first variant
    if not sequences:
        raise PrepareError(f"{src}: expected train/MOT17-XX-<detector>/ (MOT17's layout)")
    pairs = []
    for seq in sequences.values():
        if not (seq / "gt" / "gt.txt").is_file() or not any((seq / "img1").glob("*.jpg")):
            raise PrepareError(f"{seq} lacks gt/gt.txt or img1/*.jpg")
        files = [seq / "gt" / "gt.txt", *sorted((seq / "img1").glob("*.jpg"))]
        files += [seq / "seqinfo.ini"] if (seq / "seqinfo.ini").is_file() else []
        pairs += [(f, dst / "train" / seq.name / f.relative_to(seq)) for f in files]
    link_all(pairs, progress)
