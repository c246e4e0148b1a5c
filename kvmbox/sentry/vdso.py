"""The vDSO's place in a sandbox: its frames in guest RAM (once per platform) and its mapping in each process.

Platform-independent: it uses only the platform's MemoryFile and FrameAllocator
and the MemoryManager (AddressSpace.map), so every platform gets the vDSO.
"""
from __future__ import annotations


from kvmbox.abi.mman import PROT_EXEC, PROT_READ
from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub import vdso as image_builder
from kvmbox.record import record
from kvmbox.sentry.timekeeper import Timekeeper


@record
class VdsoFrames:
    """[vvar] at `phys`, the image right after it; and the Timekeeper writing the [vvar] page."""
    phys: int
    image_pages: int
    timekeeper: Timekeeper

    def map_into(self, mm) -> int:
        """Map [vvar] and [vdso] into a process at their fixed addresses; returns AT_SYSINFO_EHDR."""
        mm.map_special(L.VVAR_VIRT, self.phys, 1, PROT_READ, "[vvar]")
        mm.map_special(L.VDSO_VIRT, self.phys + L.PAGE_SIZE, self.image_pages,
                       PROT_READ | PROT_EXEC, "[vdso]")
        return L.VDSO_VIRT

    def close(self) -> None:
        self.timekeeper.stop()


def install(memfile, frames) -> VdsoFrames:
    """Take frames for [vvar] + the image (never given back), write the image, start the clock."""
    img = image_builder.build()
    npages = 1 + img.npages
    extents = frames.alloc(npages)
    if len(extents) != 1:                    # a fresh platform's pool is one extent
        for phys, n in extents:
            frames.free(phys, n)
        raise RuntimeError("kvmbox: no contiguous frames for the vDSO")
    phys = extents[0][0]
    memfile.write(phys, bytes(L.PAGE_SIZE))
    memfile.write(phys + L.PAGE_SIZE, img.image)
    return VdsoFrames(phys, img.npages, Timekeeper(memfile.view, phys))
