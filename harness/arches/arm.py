from harness.arches.base import Arch

ARCH = Arch(
    name="arm",
    linux_arch="arm",
    # Soft-float default: with Debian's hard-float arm-linux-gnueabihf- GCC 12,
    # v5.0's -march=armv7-a probe fails and the assembler rejects isb/dmb/ldrex.
    kernel_cross="arm-linux-gnueabi-",
    kernel_cross_package="gcc-arm-linux-gnueabi",
    image_target="zImage",
    image_path="arch/arm/boot/zImage",
    fragment="arch/arm.config",
    debian_arch="armhf",
    user_cross="arm-linux-gnueabihf-",
    user_cross_package="gcc-arm-linux-gnueabihf",
    qemu_binary="qemu-system-arm",
    qemu_package="qemu-system-arm",
    # highmem=off keeps the PCIe ECAM below 4 GiB where a 32-bit kernel can map it.
    machine="virt,highmem=off",
    cpu="cortex-a15",
    console="ttyAMA0",
    kvm_host="armv7l",
    numa=False,
    notes=(
        "kernel built soft-float (arm-linux-gnueabi-); userspace is Debian armhf, which runs on it",
        "no NUMA on 32-bit arm: NUMA scenarios are skipped",
    ),
)
