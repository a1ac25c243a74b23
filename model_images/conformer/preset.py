"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class SpecAugment(ws.Section):
    """SpecAugment's masks: data.spec_augment's arguments."""

    freq_masks: int
    freq_width: int
    time_masks: int
    time_ratio: float


class Preset(ws.Preset):
    letters: int | None = None  # the synthetic data's alphabet
    utterances: int | None = None  # synthetic training utterances ...
    val_utterances: int | None = None  # ... and held-out ones
    frames: int | None = None  # speed mode's synthetic utterances ...
    label_length: int | None = None  # ... and their transcripts' length
    spec_augment: SpecAugment | None = None  # None: no augmentation
    optim: ws.Optim
