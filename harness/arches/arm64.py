from harness.arches.base import Arch

ARCH = Arch(
    name="arm64",
    linux_arch="arm64",
    kernel_cross="aarch64-linux-gnu-",
    kernel_cross_package="gcc-aarch64-linux-gnu",
    image_target="Image",
    image_path="arch/arm64/boot/Image",
    fragment="arch/arm64.config",
    debian_arch="arm64",
    user_cross="aarch64-linux-gnu-",
    user_cross_package="gcc-aarch64-linux-gnu",
    qemu_binary="qemu-system-aarch64",
    qemu_package="qemu-system-arm",
    machine="virt",
    cpu="cortex-a57",
    console="ttyAMA0",
    kvm_host="aarch64",
    numa=True,
    notes=(
        "cortex-a57: kernels before 5.12 need lpa2=off with -cpu max on QEMU 6.2+",
        "NUMA comes from the device tree QEMU writes for -numa with -kernel boot",
    ),
)
