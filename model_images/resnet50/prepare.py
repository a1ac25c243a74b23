"""ImageNet-1k to this workload's class folders: the library's converter, shared with the other
ImageNet workloads."""

from deepspark_workload.imagenet import convert as convert
