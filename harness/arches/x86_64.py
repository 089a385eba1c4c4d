from harness.arches.base import Arch

ARCH = Arch(
    name="x86_64",
    linux_arch="x86_64",
    kernel_cross="",
    kernel_cross_package="gcc",
    image_target="bzImage",
    image_path="arch/x86/boot/bzImage",
    fragment="arch/x86_64.config",
    debian_arch="amd64",
    user_cross="",
    user_cross_package="gcc",
    qemu_binary="qemu-system-x86_64",
    qemu_package="qemu-system-x86",
    machine="q35",
    cpu="max",
    console="ttyS0",
    kvm_host="x86_64",
    numa=True,
    notes=(
        "-smp sockets=N,cores=1: plain -smp puts both cores in one socket on two nodes and v5.0 WARNs in topology_sane",
    ),
)
