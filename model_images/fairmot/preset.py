"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Synthetic(ws.Section):
    """The generated videos: data.synthetic's arguments."""

    train_videos: int
    train_frames: int
    val_videos: int
    val_frames: int
    objects: list[int]  # shapes per video, drawn from these


class Track(ws.Section):
    """The tracker's thresholds."""

    threshold: float  # heatmap peak score for a detection
    emb_gate: float  # largest embedding cosine distance for a match
    iou_gate: float  # smallest IoU for a match in the second round
    max_lost: int  # frames a track may go unmatched


class Optim(ws.Optim):
    lr_drop: float  # the fraction of all steps after which lr is divided by 10


class Preset(ws.Preset):
    image_size: tuple[int, int]  # height, width
    max_objs: int  # target slots per frame
    synthetic: Synthetic | None = None  # with data = "synthetic"
    track: Track
    optim: Optim
