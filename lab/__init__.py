"""A multi-node minik8s cluster on one machine, for tests and demos: `minik8s lab up|down|load|exec`."""
from lab.lab import Lab, LabNode, ipvs_available

__all__ = ["Lab", "LabNode", "ipvs_available"]
