"""This workload's workload.toml keys (docs/workload-contract.md): the core's, with `[optim]`
required in every preset, so a preset without one fails when the file is read, not with an
AttributeError in train.py."""

from deepspark_core import workload_spec as ws


class Preset(ws.Preset):
    optim: ws.Optim
