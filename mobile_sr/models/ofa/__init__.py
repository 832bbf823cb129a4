"""Once-for-All SR: elastic ops (:mod:`.ops`), elastic layers (:mod:`.layers`) and the supernet (:mod:`.network`).

Kept apart as in OFA, so that the exported graph never contains elastic machinery: a subnet is
cut out with :meth:`OFASR.get_subnet` into plain convolutions.
"""

from .network import (
    DEPTHS,
    EXPANDS,
    KERNELS,
    OFASR,
    SCALES,
    STAGES,
    WIDTH,
    Arch,
    OFASubnet,
    largest,
    sample,
    smallest,
)

__all__ = ["DEPTHS", "EXPANDS", "KERNELS", "SCALES", "STAGES", "WIDTH", "OFASR", "Arch", "OFASubnet", "largest",
           "sample", "smallest"]
