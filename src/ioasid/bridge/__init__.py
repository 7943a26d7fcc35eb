"""The bridge: the simulated kernel served to unmodified programs (``ioasid run``).

A program in any language opens ``/dev/iommu``, ``/dev/vfio/vfio`` or
``/dev/vfio/devices/vfioN`` and issues its ioctls as on a real host; a seccomp
user-notification filter installed before ``exec`` (:mod:`~ioasid.bridge.seccomp`) brings
those calls to the supervisor (:mod:`~ioasid.bridge.supervisor`), which runs them in
:mod:`ioasid.kernel` exactly as the sim backend does, against the program's own memory
(:mod:`~ioasid.bridge.memory`) and descriptors (:mod:`~ioasid.bridge.files`). ``/proc``
files that report the kernel's view (``VmPin``, ``fail-nth``) and the fault-injection knobs
are synthesised (:mod:`~ioasid.bridge.procfs`). Everything else the program does runs on the
real kernel, untouched.
"""

from ioasid.bridge.memory import ProcessAddressSpace
from ioasid.bridge.supervisor import LaunchError, Supervisor, launch, run

__all__ = ["LaunchError", "ProcessAddressSpace", "Supervisor", "launch", "run"]
